"""Registrations for verl processes: `VERL_USE_EXTERNAL_MODULES=rl_runner.verl_backend.plugin`.

verl imports the listed modules whenever `verl` is imported (driver, TaskRunner, every Ray worker), which puts
the `pixel_gym_agent` loop, the `pixel_gym` tool parser, the `grpo_curiosity` estimator and, where verl's v1
trainer can run (the `transfer_queue` package is installed), the `pixel_gym_sync` trainer into verl's registries.
"""

from importlib.util import find_spec

from rl_runner.verl_backend import advantage, agent_loop, tool_agent  # noqa: F401  (registration on import)

if find_spec("transfer_queue") is not None:
    from rl_runner.verl_backend import trainer  # noqa: F401
