"""Video questions' frames: MVBench's segment sampling over a video file or a folder of extracted frames.

A video file is decoded (imageio's ffmpeg) only when one of its frames is first shown, and then only up to the
last frame needed; the decoded frames of the last few videos stay cached, so an episode decodes its clip once.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path

import imageio_ffmpeg
from PIL import Image

from pixel_gym.datasets.common import DatasetError, image_files_in, resolve_inside
from pixel_gym.tasks import ImageLoadError, ImageRef

NUM_SEGMENTS = 16  # MVBench's evaluation samples 16 frames, as many as the env shows
FOLDER_FPS = 3.0  # MVBench's extracted-frame folders (TVQA frames_fps3_hq)
Bound = tuple[float, float]


def segment_indices(max_frame: int, fps: float, num_segments: int, bound: Bound | None = None,
                    first_index: int = 0) -> list[int]:
    """MVBench's frame choice: the middle frame of each of `num_segments` equal segments of the clip, or of its
    [start, end] seconds when bounded; indices run from `first_index` to `max_frame`."""
    start, end = bound if bound is not None else (-100_000.0, 100_000.0)
    start_index = max(first_index, round(start * fps))
    end_index = min(round(end * fps), max_frame)
    size = (end_index - start_index) / num_segments
    return [int(start_index + size / 2 + round(size * i)) for i in range(num_segments)]


def video_frames(root: Path, relative: str | Path, task_id: str, bound: Bound | None = None,
                 num_segments: int = NUM_SEGMENTS) -> tuple[ImageRef, ...]:
    """`num_segments` lazy frames of the video file or frame folder at `root / relative`."""
    path = resolve_inside(root, relative, f"task {task_id}")
    if path.is_dir():
        files = image_files_in(path)
        if not files:
            raise DatasetError(f"task {task_id}: frame folder {path} holds no images")
        indices = segment_indices(len(files), FOLDER_FPS, num_segments, bound, first_index=1)
        chosen = [files[min(max(i, 1), len(files)) - 1] for i in indices]
        return tuple(ImageRef(str(f), name=f"{f} (task {task_id})") for f in chosen)
    if not path.is_file():
        raise DatasetError(f"task {task_id}: video not found: {path}")
    clip = VideoClip(path, bound, num_segments, task_id)
    return tuple(ImageRef(partial(clip.frame, k), name=f"{path} frame {k + 1}/{num_segments} (task {task_id})")
                 for k in range(num_segments))


@dataclass(frozen=True)
class VideoClip:
    path: Path
    bound: Bound | None
    num_segments: int
    task_id: str

    def frame(self, index: int) -> Image.Image:
        try:
            return decode_segments(self.path, self.bound, self.num_segments)[index]
        except ImageLoadError as error:
            raise ImageLoadError(f"task {self.task_id}: {error}") from error


@lru_cache(maxsize=4)
def decode_segments(path: Path, bound: Bound | None, num_segments: int) -> tuple[Image.Image, ...]:
    """The sampled frames of a video file as RGB images (a frame past the decodable end repeats the last one)."""
    frames: dict[int, Image.Image] = {}
    try:
        count, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
        reader = imageio_ffmpeg.read_frames(str(path))
        try:
            meta = next(reader)
            indices = segment_indices(count - 1, float(meta.get("fps") or 30), num_segments, bound)
            wanted = set(indices)
            for number, raw in enumerate(reader):
                if number in wanted:
                    frames[number] = Image.frombytes("RGB", tuple(meta["size"]), raw)
                if number >= max(indices):
                    break
        finally:
            reader.close()
    except (OSError, RuntimeError, StopIteration, ValueError) as error:
        raise ImageLoadError(f"cannot decode video {path}: {error}") from error
    if not frames:
        raise ImageLoadError(f"no frame of video {path} could be decoded")
    last = frames[max(frames)]  # frames decode in order, so only indices past the end can be missing
    return tuple(frames.get(i, last) for i in indices)
