"""Agents that act in pixel-gym: scripted baselines (`agents.scripted`), transformers VLMs (`agents.vlm`, with
`agents.chat` for chat templating), a tiny real Qwen2.5-VL built locally (`agents.tiny`) and any OpenAI-compatible
endpoint (`agents.openai_agent`). Submodules are imported explicitly so that light users do not pay for
importing transformers."""
