"""The trainer: `python -m rl_runner.train` (traces -> SFT warm-start -> GRPO/PPO with the curiosity bonus),
locally or with `--backend verl` on a Ray cluster."""
