"""The offered pixel ops (`pixel_gym.ops`) as verl `BaseTool`s, for verl's stock `tool_agent` loop (`tool_config.yaml`).

verl creates and releases a tool instance around every call, so the episode lives on the trajectory's
`AgentData` (verl passes it to `execute`): a `PixelVQAEnv` reset on the row's task at the first call (task and
env specs from `tools_kwargs[<tool>].create_kwargs`, as `data.rl_rows` writes them). Each call is executed by
that env -- same validation, padding, resizing and numbering of images (1 = the original, then every view in
order) as everywhere else -- and its result comes back as text plus images; selected frames come back as
images, since verl's tool loop refuses video. The episode's op counts are kept in `AgentData.extra_fields` for
the `grpo_curiosity` estimator, with the text of the last reply (the final turn follows it: `reward.compute_score`
reads the answer there); never the answer itself, which the tools cannot know.
"""

from __future__ import annotations

from typing import Any

from verl.tools.base_tool import BaseTool
from verl.tools.schemas import OpenAIFunctionToolSchema, ToolResponse

from agents.chat import to_pil
from pixel_gym.actions import format_tool_call
from pixel_gym.env import PixelVQAEnv
from pixel_gym.ops import Operation, get_op, resolve_ops
from rl_runner.verl_backend.fields import call_fields
from rl_runner.verl_backend.specs import EnvSettings, load_task, make_env

SESSION_ATTRIBUTE = "_pixel_gym_env"


class PixelOpTool(BaseTool):
    """A registered pixel op (`config["op"]`, its schema from the registry) executed by the trajectory's env."""

    def __init__(self, config: dict[str, Any], tool_schema: OpenAIFunctionToolSchema | None = None) -> None:
        super().__init__(config, tool_schema or OpenAIFunctionToolSchema.model_validate(get_op(config["op"]).schema))

    async def execute(self, instance_id: str, parameters: dict[str, Any],
                      **kwargs: Any) -> tuple[ToolResponse, float, dict[str, Any]]:
        agent_data = kwargs["agent_data"]
        env = session_env(agent_data, self.name)
        observation, _, _, _, info = env.step(format_tool_call(self.name, parameters))
        reply = observation["messages"][-1]["content"]
        text = "".join(part["text"] for part in reply if part["type"] == "text")
        agent_data.extra_fields.update(call_fields(env.episode, text))
        images = [to_pil(part["image"]) for part in reply if part["type"] == "image"]
        response = ToolResponse(text=text, image=images) if images else ToolResponse(text=text)
        return response, 0.0, {"error": info["last_error"]}


def session_env(agent_data: Any, tool_name: str) -> PixelVQAEnv:
    """The trajectory's env, reset on the row's task at the first call."""
    env = getattr(agent_data, SESSION_ATTRIBUTE, None)
    if env is None:
        create = agent_data.tools_kwargs[tool_name]["create_kwargs"]
        task = load_task(create["task"])
        env = make_env(EnvSettings.from_json(create.get("env")), task)
        env.reset(options={"task": task})
        setattr(agent_data, SESSION_ATTRIBUTE, env)
    return env


def tool_config(ops: tuple[str | Operation, ...] | None = None) -> dict[str, Any]:
    """The content of verl's `multi_turn.tool_config_path` YAML: one `PixelOpTool` per offered op (default: the
    released two)."""
    name = f"{PixelOpTool.__module__}.{PixelOpTool.__qualname__}"
    return {"tools": [{"class_name": name, "config": {"type": "native", "op": op.name}} for op in resolve_ops(ops)]}
