"""Shared fixtures. Nothing may come from the Hugging Face hub: tests run offline."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

# CI has 2 cores shared by the test process and AsyncVectorEnv workers: one torch thread is much faster than two
# contending ones (measured 40x on a loaded machine).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2.5-VL checkpoint folder (built once per test session)."""
    from agents.tiny import ensure_tiny_model

    return ensure_tiny_model(tmp_path_factory.getbasetemp() / "tiny-models")
