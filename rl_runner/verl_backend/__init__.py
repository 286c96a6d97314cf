"""The verl backend: pixel-gym episodes inside verl's agent loop, Pixel Reasoner's rewards, verl's trainer.

- `agent_loop.PixelGymAgentLoop` (`pixel_gym_agent`): a `PixelVQAEnv` drives each rollout.
- `tools`: the pixel ops as verl `BaseTool`s for verl's stock `tool_agent` loop.
- `reward.compute_score`: correctness (verl custom reward function).
- `advantage` (`grpo_curiosity`) and `trainer` (`pixel_gym_sync`): group curiosity shaping, then verl's GRPO.
- `data`, `specs`, `messages`: parquet rows for verl's RL and multi-turn SFT datasets.
- `trainer_config`, `settings`, `launch`: validated verl configs and `launch.launch`, the `--backend verl` entry
  point (kept out of this module: every verl worker imports the package through `plugin`).
- `plugin`: the module verl imports in every process (`VERL_USE_EXTERNAL_MODULES`).
"""

