"""Where a training run's metrics go: `--logger console,jsonl,tensorboard,wandb` (a comma list; `jsonl` is always on).

Every sink gets the records `metrics.jsonl` gets (`{"stage": ..., "step": ..., <metric>: <number>, ...}`) and every
evaluation's zoom gallery as an image. One class per sink, registered by name in `SINKS` (`@register`):

- `jsonl`: `<run>/metrics.jsonl`, one JSON line per record (what the learning curve and `--resume` read);
- `console`: one line per record, printed above the progress bars;
- `tensorboard`: event files under `<run>/tensorboard/<stage>/` (one TensorBoard run per stage, so the SFT loss and
  its blind control share a chart); a resume marks the recomputed steps as purged, so TensorBoard shows each once;
- `wandb`: a Weights & Biases run (project `$WANDB_PROJECT`, default `pixel-gym`; `WANDB_MODE=offline` is honoured,
  as wandb reads it), each stage's metrics against its own step; needs `pip install wandb`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image
from tqdm import tqdm

METRICS_FILE = "metrics.jsonl"
ALWAYS_ON = "jsonl"


class LoggerError(RuntimeError):
    """A sink could not start (for example wandb without an account and without `WANDB_MODE=offline`)."""


class Sink:
    """One destination of metrics. The trainer calls `log` per record, `log_image` per evaluation gallery,
    `restart` when the metrics log starts afresh, `truncate(step)` when a resume recomputes the RL and evaluation
    records from `step` on, and `close` at the end."""

    name: ClassVar[str]

    def __init__(self, run_dir: Path, config: dict[str, Any]) -> None:
        """Open the sink for the run folder `run_dir`; `config` is the run's TrainConfig as a dict."""

    @classmethod
    def check(cls) -> None:
        """Raise ValueError when this sink cannot work here (a missing package)."""

    def log(self, record: dict[str, Any]) -> None:
        raise NotImplementedError

    def log_image(self, stage: str, step: int, tag: str, path: Path) -> None:
        """Log the PNG at `path` (default: nothing; the file itself stays in the run folder)."""

    def restart(self) -> None:
        """The metrics log starts afresh (default: nothing to undo)."""

    def truncate(self, next_step: int) -> None:
        """Records from `next_step` on will be logged again (default: nothing to undo)."""

    def close(self) -> None:
        """Flush and release (default: nothing held)."""


SINKS: dict[str, type[Sink]] = {}


def register(cls: type[Sink]) -> type[Sink]:
    """Make a sink available to `--logger` under `cls.name`."""
    SINKS[cls.name] = cls
    return cls


def numbers(record: dict[str, Any]) -> dict[str, float]:
    """The numeric metrics of a record (stage and step left out)."""
    return {key: float(value) for key, value in record.items()
            if key not in ("stage", "step") and isinstance(value, (int, float)) and not isinstance(value, bool)}


@register
class JsonlSink(Sink):
    name = "jsonl"

    def __init__(self, run_dir: Path, config: dict[str, Any]) -> None:
        super().__init__(run_dir, config)
        self.path = run_dir / METRICS_FILE

    def log(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def restart(self) -> None:
        self.path.unlink(missing_ok=True)


@register
class ConsoleSink(Sink):
    name = "console"

    def log(self, record: dict[str, Any]) -> None:
        values = " ".join(f"{key}={value:.4g}" for key, value in numbers(record).items())
        tqdm.write(f"[{record['stage']} {record['step']}] {values}")

    def log_image(self, stage: str, step: int, tag: str, path: Path) -> None:
        tqdm.write(f"[{stage} {step}] {tag}: {path}")


@register
class TensorBoardSink(Sink):
    name = "tensorboard"

    def __init__(self, run_dir: Path, config: dict[str, Any]) -> None:
        super().__init__(run_dir, config)
        self.root = run_dir / "tensorboard"
        self.writers: dict[str, Any] = {}
        self.purge_step: int | None = None
        self.wiped = False  # restarted in this process: no earlier events to purge

    @classmethod
    def check(cls) -> None:
        if importlib.util.find_spec("tensorboard") is None:
            raise ValueError("--logger tensorboard needs the tensorboard package: pip install tensorboard")

    def writer(self, stage: str) -> Any:
        if stage not in self.writers:
            from torch.utils.tensorboard import SummaryWriter

            self.writers[stage] = SummaryWriter(str(self.root / stage), purge_step=self.purge_step, flush_secs=30)
        return self.writers[stage]

    def log(self, record: dict[str, Any]) -> None:
        writer = self.writer(record["stage"])
        for key, value in numbers(record).items():
            writer.add_scalar(key, value, record["step"])

    def log_image(self, stage: str, step: int, tag: str, path: Path) -> None:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        self.writer(stage).add_image(tag, pixels, step, dataformats="HWC")

    def restart(self) -> None:
        self.close()
        shutil.rmtree(self.root, ignore_errors=True)
        self.wiped = True

    def truncate(self, next_step: int) -> None:
        # writers opened from now on start with a purge marker: readers drop the earlier process's events from
        # next_step on
        if not self.wiped:
            self.close()
            self.purge_step = next_step

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()


@register
class WandbSink(Sink):
    """A resumed training run starts a new W&B run (W&B keeps what it was sent)."""

    name = "wandb"

    @classmethod
    def check(cls) -> None:
        if importlib.util.find_spec("wandb") is None:
            raise ValueError("--logger wandb needs the wandb package, which is not installed: pip install wandb "
                             "(or leave wandb out of --logger)")

    def __init__(self, run_dir: Path, config: dict[str, Any]) -> None:
        super().__init__(run_dir, config)
        import wandb

        self.wandb = wandb
        try:
            self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "pixel-gym"), name=run_dir.name,
                                  dir=str(run_dir), config=config)
        except Exception as error:  # no account, no network: say how to log offline
            raise LoggerError(f"wandb could not start ({error}); set WANDB_MODE=offline to log without an "
                              "account") from error
        self.stages: set[str] = set()

    def _send(self, stage: str, step: int, values: dict[str, Any]) -> None:
        if stage not in self.stages:  # each stage's metrics against its own step
            self.run.define_metric(f"{stage}/step")
            self.run.define_metric(f"{stage}/*", step_metric=f"{stage}/step")
            self.stages.add(stage)
        self.run.log({**{f"{stage}/{key}": value for key, value in values.items()}, f"{stage}/step": step})

    def log(self, record: dict[str, Any]) -> None:
        self._send(record["stage"], record["step"], numbers(record))

    def log_image(self, stage: str, step: int, tag: str, path: Path) -> None:
        self._send(stage, step, {tag: self.wandb.Image(str(path))})

    def close(self) -> None:
        self.run.finish()


def logger_names(spec: str) -> list[str]:
    """The sinks a `--logger` value names, `jsonl` included; ValueError for an unknown or unavailable one."""
    names = [ALWAYS_ON]
    for name in (part.strip() for part in spec.split(",")):
        if name and name not in SINKS:
            raise ValueError(f"logger must be a comma list of {', '.join(SINKS)}; got {name!r}")
        if name and name not in names:
            SINKS[name].check()
            names.append(name)
    return names


class Loggers:
    """The run's sinks, called together."""

    def __init__(self, sinks: list[Sink]) -> None:
        self.sinks = sinks

    @classmethod
    def open(cls, spec: str, run_dir: Path, config: dict[str, Any]) -> Loggers:
        sinks: list[Sink] = []
        try:
            for name in logger_names(spec):
                sinks.append(SINKS[name](run_dir, config))
        except BaseException:
            cls(sinks).close()
            raise
        return cls(sinks)

    def log(self, record: dict[str, Any]) -> None:
        for sink in self.sinks:
            sink.log(record)

    def log_image(self, stage: str, step: int, tag: str, path: Path) -> None:
        for sink in self.sinks:
            sink.log_image(stage, step, tag, path)

    def restart(self) -> None:
        for sink in self.sinks:
            sink.restart()

    def truncate(self, next_step: int) -> None:
        for sink in self.sinks:
            sink.truncate(next_step)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
