"""`PixelGymAgentLoop`: verl's multi-turn rollout driven by a `PixelVQAEnv` per sample.

The env shows the task (`reset`), reads each generated turn (`step`) and answers with a tool result, an error or
the end of the episode; the loop only tokenizes. Token bookkeeping is verl's Continuous Token path (the same as
`ToolAgentLoop`): model tokens get response_mask 1 and their rollout log-probs, env tokens 0; the images the env
returns are appended to the multimodal history, so the trainer re-encodes every view the model saw.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import uuid4

from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopOutput, register
from verl.utils.profiler import simple_timer
from verl.utils.rollout_trace import rollout_trace_op

from rl_runner.verl_backend.fields import episode_fields
from rl_runner.verl_backend.messages import chat_images, to_chat
from rl_runner.verl_backend.specs import EnvSettings, load_task, make_env

AGENT_NAME = "pixel_gym_agent"
logger = logging.getLogger(__name__)


@register(AGENT_NAME)
class PixelGymAgentLoop(AgentLoopBase):
    """One pixel-gym episode per sample; the row's `extra_info` holds the task and env specs (see `specs`)."""

    def __init__(self, *args: Any, later_temperature: float | None = None, **kwargs: Any) -> None:
        """`later_temperature` (from the agent-loop YAML, `TrainConfig.later_temperature`): the temperature of
        every turn after the first in training rollouts; None: verl's one `rollout.temperature` throughout."""
        super().__init__(*args, **kwargs)  # verl's `tools` kwarg is ignored: the env executes the ops
        self.response_length = self.rollout_config.response_length
        self.later_temperature = later_temperature

    def turn_sampling(self, sampling_params: dict[str, Any], turn: int) -> dict[str, Any]:
        """Sampling of model turn `turn` (0-based): training rollouts (verl's `rollout.temperature`; validation
        passes its own) switch to `later_temperature` after the first turn, as the paper's sampling does."""
        training = sampling_params.get("temperature") == self.rollout_config.temperature
        if turn == 0 or self.later_temperature is None or not training:
            return sampling_params
        return {**sampling_params, "temperature": self.later_temperature}

    @rollout_trace_op
    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput:
        extra_info = kwargs["extra_info"]
        task = load_task(extra_info["task"])
        env = make_env(EnvSettings.from_json(extra_info.get("env")), task)
        observation, _ = env.reset(options={"task": task})
        messages = to_chat(observation["messages"])
        images = chat_images(messages)
        self._assert_mm_supported(bool(images))
        metrics: dict[str, Any] = {}
        request_id = uuid4().hex
        token_ids = await self.ct_build_initial_tokens(messages, images=images)
        mask: list[int] = []
        logprobs: list[float] = []
        replies = 0
        while True:
            with simple_timer("generate_sequences", metrics):
                output = await self.server_manager.generate(
                    request_id=request_id,
                    prompt_ids=token_ids,
                    sampling_params={**self.turn_sampling(sampling_params, replies),
                                     "max_tokens": self.response_length - len(mask)},
                    image_data=images or None,
                )
            merged, mask, merged_logprobs = await self.ct_merge_assistant_token(
                token_ids, output.token_ids, mask, logprobs if (logprobs or output.log_probs) else None,
                assistant_logprobs=output.log_probs or None,
            )
            token_ids, logprobs = merged.token_ids, merged_logprobs or logprobs
            text = self.tokenizer.decode(output.token_ids, skip_special_tokens=True)
            with simple_timer("tool_calls", metrics):
                try:
                    observation, _, terminated, truncated, _ = env.step(text)
                except Exception as error:  # one crashing turn ends this episode unanswered, not the training run
                    logger.warning("episode of task %s failed: %s: %s", task.id, type(error).__name__, error,
                                   exc_info=error)
                    break
            if terminated or truncated or len(mask) >= self.response_length:
                break
            new = to_chat(observation["messages"][len(messages):])  # the turn the env recorded, then its reply
            merged, new_mask, merged_logprobs = await self.ct_merge_context_msg(
                messages + new[:1], messages + new, token_ids, mask, logprobs or None
            )
            if len(new_mask) >= self.response_length:
                break
            token_ids, mask, logprobs = merged.token_ids, new_mask, merged_logprobs or []
            replies += 1
            messages += new
            images += chat_images(new)
        episode = env.episode
        assert episode is not None
        prompt_length = len(token_ids) - len(mask)
        return AgentLoopOutput(
            prompt_ids=token_ids[:prompt_length],
            response_ids=token_ids[prompt_length:][: self.response_length],
            response_mask=mask[: self.response_length],
            response_logprobs=logprobs[: self.response_length] if logprobs else None,
            multi_modal_data={"images": images} if images else {},
            num_turns=1 + episode.turns + replies,
            metrics=metrics,
            extra_fields=episode_fields(episode),
        )
