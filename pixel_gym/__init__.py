"""pixel-gym: Gymnasium environments for pixel-space reasoning (zoom-in, select-frames) with curiosity rewards."""

from gymnasium.envs.registration import register

from pixel_gym.actions import Answer, Invalid, SelectFrames, ZoomIn, parse_turn
from pixel_gym.env import PixelVQAEnv
from pixel_gym.reward import CuriosityConfig
from pixel_gym.tasks import Box, ImageRef, Task

ENTRY_POINT = "pixel_gym.env:PixelVQAEnv"
ENV_IDS: dict[str, str] = {
    "PixelVQA-v0": "mixed",
    "PixelVQA-FineDetail-v0": "fine_detail",
    "PixelVQA-Counting-v0": "counting",
    "PixelVQA-Document-v0": "document",
    "PixelVQA-Video-v0": "video",
}

for _env_id, _suite in ENV_IDS.items():
    register(id=_env_id, entry_point=ENTRY_POINT, kwargs={"suite": _suite}, disable_env_checker=False)

__all__ = [
    "Answer", "Box", "CuriosityConfig", "ENV_IDS", "ImageRef", "Invalid", "PixelVQAEnv", "SelectFrames", "Task",
    "ZoomIn", "parse_turn",
]
