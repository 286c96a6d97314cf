"""Dataset roots: a local folder, or `hf://<owner>/<name>`, a Hugging Face dataset fetched into the published layout.

A hub dataset is downloaded with `huggingface_hub.snapshot_download` (the repository's files as published, which
is what the loaders read; `datasets.load_dataset` would keep only the table, not the image folders) into
`$PIXEL_GYM_DATA` (default `~/.cache/pixel_gym/datasets`), and every zip archive in it (images.zip, videos.zip,
MVBench's video/*.zip) is extracted beside itself once.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from pixel_gym.datasets.common import DatasetError, resolve_inside

HUB_PREFIX = "hf://"


def dataset_root(data_dir: str | os.PathLike) -> Path:
    text = str(data_dir)
    if text.startswith(HUB_PREFIX):
        return download(text.removeprefix(HUB_PREFIX))
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root} (a Hugging Face dataset is named hf://owner/name)")
    return root


def cache_dir() -> Path:
    return Path(os.environ.get("PIXEL_GYM_DATA", Path.home() / ".cache" / "pixel_gym" / "datasets"))


def download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    target = cache_dir() / repo_id.replace("/", "--")
    snapshot_download(repo_id=repo_id, repo_type="dataset", local_dir=target)
    for archive in sorted(target.rglob("*.zip")):
        extract_once(archive)
    return target


def extract_once(archive: Path) -> None:
    """Unpack `archive` into its folder unless done before; a member path that would leave the folder is refused."""
    marker = archive.with_name(archive.name + ".extracted")
    if marker.exists():
        return
    with zipfile.ZipFile(archive) as bundle:
        for member in bundle.namelist():
            resolve_inside(archive.parent, member, f"archive {archive}")
        bundle.extractall(archive.parent)
    marker.touch()
