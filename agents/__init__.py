"""Agents that act in pixel-gym: scripted baselines (`agents.scripted`), transformers VLMs (`agents.vlm`) and
a tiny real Qwen2.5-VL for tests (`agents.tiny`). Submodules are imported explicitly so that light users do not
pay for importing transformers."""
