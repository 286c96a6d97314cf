"""What verl's stock `tool_agent` loop needs to show the model what the env shows: a chat template and a parser.

- `TEMPLATE` (`actor_rollout_ref.model.custom_chat_template`): the tiny model's template (`agents.tiny`) with two
  changes. A conversation that starts with a system message renders it as written and ignores verl's `tools`
  argument: the rows keep the env's system prompt, whose tool block is the released one (verl's tool schemas drop
  `items`, so the template's own tool block would differ). A verl tool message -- images first, then the text --
  renders as the env's tool-result turn: a user turn with the text, then the images, no `<tool_response>` tags.
- `PARSER` (`actor_rollout_ref.rollout.multi_turn.format`): the released end rule. A turn is a tool call only if
  it ends with `</tool_call>`; the JSON after its last `<tool_call>` is the call. verl's `hermes` parser instead
  calls every `<tool_call>` block anywhere in the turn.
What stays different (verl's loop, not changeable from here): a turn whose call is not valid JSON ends the
rollout (the env answers it with an execution error); an unknown tool name gets verl's error text; the env's
5-call / 16-image / token ends are verl's `max_assistant_turns` and `response_length` there.
"""

from __future__ import annotations

import json
from typing import Any

from verl.experimental.agent_loop.tool_parser import FunctionCall, ToolParser
from verl.utils.ray_utils import get_event_loop

from agents.tiny import CHAT_TEMPLATE
from pixel_gym.actions import TOOL_END, TOOL_START

PARSER = "pixel_gym"
_TOOLS_BLOCK = "{%- if tools -%}"
_ENV_TOOLS_BLOCK = "{%- if tools and messages[0]['role'] != 'system' -%}"
_TOOL_TURN = """  {%- elif message['role'] == 'tool' -%}
    {%- if loop.first or messages[loop.index0 - 1]['role'] != 'tool' -%}{{- '<|im_start|>user' -}}{%- endif -%}
    {{- '\\n<tool_response>\\n' -}}{{- render_content(message['content']) -}}{{- '\\n</tool_response>' -}}
    {%- if loop.last or messages[loop.index0 + 1]['role'] != 'tool' -%}{{- '<|im_end|>\\n' -}}{%- endif -%}
"""
_ENV_TOOL_TURN = """  {%- elif message['role'] == 'tool' -%}
    {{- '<|im_start|>user\\n' -}}
    {%- if message['content'] is string -%}{{- message['content'] -}}
    {%- else -%}
      {{- render_content(message['content'] | rejectattr('type', 'equalto', 'image') | list) -}}
      {{- render_content(message['content'] | selectattr('type', 'equalto', 'image') | list) -}}
    {%- endif -%}
    {{- '<|im_end|>\\n' -}}
"""


def env_template(base: str = CHAT_TEMPLATE) -> str:
    """`base` with the system and tool-turn rendering of the env (see the module docstring)."""
    for old in (_TOOLS_BLOCK, _TOOL_TURN):
        if base.count(old) != 1:
            raise ValueError(f"the chat template changed: {old.strip()[:60]!r} is not in it exactly once")
    return base.replace(_TOOLS_BLOCK, _ENV_TOOLS_BLOCK).replace(_TOOL_TURN, _ENV_TOOL_TURN)


TEMPLATE = env_template()


@ToolParser.register(PARSER)
class ReleasedToolParser(ToolParser):
    """The env's (the released code's) reading of which turns are tool calls, for verl's `ToolAgentLoop`."""

    async def extract_tool_calls(self, responses_ids: list[int], tools: Any = None) -> tuple[str, list[FunctionCall]]:
        text = await get_event_loop().run_in_executor(
            None, lambda: self.tokenizer.decode(responses_ids, skip_special_tokens=True))
        return text, released_calls(text)


def released_calls(text: str) -> list[FunctionCall]:
    """[the call] of a turn that ends with `</tool_call>` and holds a JSON object with a name, else []."""
    if not text.strip().endswith(TOOL_END):
        return []
    try:
        payload = json.loads(text.split(TOOL_START)[-1].split(TOOL_END)[0])
    except (ValueError, RecursionError):
        return []
    if not isinstance(payload, dict) or not isinstance(payload.get("name"), str):
        return []
    return [FunctionCall(name=payload["name"], arguments=json.dumps(payload.get("arguments"), ensure_ascii=False))]
