"""Named presets: sets of `TrainConfig` field values, chosen with `--preset NAME`.

A preset replaces the embedded defaults of the fields it names; a YAML file (`--config`) and explicit flags still
override it. A new preset is one entry in `PRESETS`.

`pixel_reasoner`: the paper's RL sampling and update (TIGER-AI-Lab/Pixel-Reasoner, curiosity_driven_rl): 8
samples per question, temperature 1.0 on the first turn and 0.9 on later ones, top_p 0.95, top_k 40; advantages
are the reward minus the group mean (no std division), groups whose mean |r - mean| is under 0.01 are dropped;
PPO clip 0.2 / 0.35, no KL; the curiosity hinge with alpha 0.5, beta 0.05, H 0.3, N 1.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "pixel_reasoner": {
        "group_size": 8,
        "temperature": 1.0,
        "later_temperature": 0.9,
        "top_p": 0.95,
        "top_k": 40,
        "norm_adv_by_std": False,
        "filter_uniform_groups": True,
        "group_filter_threshold": 0.01,
        "clip_ratio_low": 0.2,
        "clip_ratio_high": 0.35,
        "kl_coef": 0.0,
        "curiosity_form": "paper",
        "curiosity_alpha": 0.5,
        "curiosity_beta": 0.05,
        "curiosity_threshold": 0.3,
        "curiosity_free_ops": 1,
    },
}


def preset_values(name: str) -> dict[str, Any]:
    """A copy of the field values of preset `name`; an unknown name is a ValueError listing the presets."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}")
    return dict(PRESETS[name])
