"""A pixel operation from outside pixel-gym: a horizontal flip, offered beside the released crop tool."""

import gymnasium as gym
from PIL import ImageOps

from pixel_gym.ops import format_tool_call, image_result, register_op

FLIP_CALL = format_tool_call("flip_horizontal", {"target_image": 1})
SCHEMA = {"name": "flip_horizontal", "description": "Mirror an image left to right. It is useful when text in the "
          "image reads backwards.", "parameters": {"type": "object", "required": ["target_image"], "properties": {
              "target_image": {"type": "number", "description": "The index of the image to flip."}}}}


def flip(context, call):
    """The op: the image `target_image` names, mirrored, as one new view."""
    target = context.target(call.arguments["target_image"])
    return image_result(context, target, ImageOps.mirror(target.image), "flipped")


def trace_step(episode, kind, rng):
    """How a synthesized SFT trace uses it (then it answers)."""
    return [f"The text may read backwards; let me flip the image.\n{FLIP_CALL}"]


register_op("flip_horizontal", SCHEMA, flip, trace=trace_step)
if __name__ == "__main__":  # one episode: flip, then answer
    env = gym.make("PixelVQA-v0", ops=["crop_image_normalized", "flip_horizontal"])
    env.reset(seed=0)
    print(env.step(FLIP_CALL)[0]["messages"][-1]["content"][0]["text"])
    print(env.step("\\boxed{A}")[-1]["reward_parts"])
