"""Image loading: 16-bit and float images scaled to 8 bits, EXIF orientation applied, extreme aspect ratios unusable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixel_gym.env import PixelVQAEnv
from pixel_gym.tasks import ImageLoadError, ImageRef, Task

GRADIENT16 = np.tile((np.arange(256) * 257).astype(np.uint16), (8, 1))  # 0, 257, ..., 65535: 8-bit value k * 257


def test_a_16_bit_png_gradient_is_scaled_not_clipped(tmp_path: Path) -> None:
    path = tmp_path / "g16.png"
    Image.fromarray(GRADIENT16).save(path)
    assert Image.open(path).mode == "I;16"
    pixels = np.asarray(ImageRef(str(path)).open())
    assert pixels.shape == (8, 256, 3)
    assert np.array_equal(pixels[0, :, 0], np.arange(256))  # was: 255 from the second column on (99.6% white)
    assert (pixels == 255).mean() == pytest.approx(1 / 256)


def test_16_bit_and_float_arrays_and_a_float_tiff_are_scaled(tmp_path: Path) -> None:
    assert np.array_equal(np.asarray(ImageRef(GRADIENT16).open())[0, :, 1], np.arange(256))
    unit = np.linspace(0, 1, 256, dtype=np.float32)  # floats in [0, 1]: value * 255
    expected = np.round(unit * 255).astype(np.uint8)
    assert np.array_equal(np.asarray(ImageRef(np.tile(unit, (4, 1))).open())[0, :, 2], expected)
    path = tmp_path / "f.tiff"
    Image.fromarray(np.tile(unit, (4, 1))).save(path)
    assert Image.open(path).mode == "F"
    assert np.array_equal(np.asarray(ImageRef(str(path)).open())[0, :, 0], expected)
    wide = np.array([[0, 100, 255, 300, np.nan]] * 30, dtype=np.float64)  # floats over 1: clipped to 0..255
    assert np.asarray(ImageRef(wide).open())[0, :, 0].tolist() == [0, 100, 255, 255, 0]
    eight_bit = np.array([[0, 7, 255]] * 30, dtype=np.int64)  # wider integers up to 255 stay as they are
    assert np.asarray(ImageRef(eight_bit).open())[0, :, 0].tolist() == [0, 7, 255]


def rotated_jpeg(path: Path, orientation: int) -> Path:
    """800x400 stored: left half red, right half blue, with an EXIF orientation tag."""
    pixels = np.zeros((400, 800, 3), dtype=np.uint8)
    pixels[:, :400] = (255, 0, 0)
    pixels[:, 400:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    return path


def test_exif_orientation_is_applied_to_size_decode_and_draft(tmp_path: Path) -> None:
    ref = ImageRef(str(rotated_jpeg(tmp_path / "r6.jpg", 6)))  # 6: displayed rotated 90 degrees clockwise
    assert ref.size() == (400, 800)
    image = np.asarray(ref.open())
    assert image.shape == (800, 400, 3)
    top, bottom = image[:300].mean(axis=(0, 1)), image[500:].mean(axis=(0, 1))
    assert top[0] > 240 and top[2] < 15 and bottom[2] > 240 and bottom[0] < 15  # the stored left (red) is on top
    assert ref.open(draft_size=(100, 200)).size == (100, 200)  # displayed 400x800 drafted by 1/4
    upright = ImageRef(str(rotated_jpeg(tmp_path / "r1.jpg", 1)))
    assert upright.size() == (800, 400) and upright.open().size == (800, 400)


def strip_png(path: Path, size: tuple[int, int]) -> Path:
    Image.new("RGB", size, (90, 90, 90)).save(path)
    return path


def test_an_extreme_aspect_ratio_is_an_unusable_image_named_with_task_and_file(tmp_path: Path) -> None:
    strip = strip_png(tmp_path / "strip.png", (6000, 20))
    with pytest.raises(ImageLoadError, match="strip.png is 6000x20, an aspect ratio over 200:1"):
        ImageRef(str(strip)).size()
    with pytest.raises(ImageLoadError, match="over 200:1"):
        ImageRef(np.zeros((3, 700, 3), dtype=np.uint8)).open()
    assert ImageRef(str(strip_png(tmp_path / "ok.png", (4000, 20)))).size() == (4000, 20)  # 200:1 exactly is fine
    task = Task("strip-task", "What is shown?", ("gray",), "exact", images=(str(strip),))
    env = PixelVQAEnv(tasks=[task])
    with pytest.raises(ImageLoadError, match=r"strip.png \(task strip-task\) is 6000x20"):
        env.reset(options={"task": task})


def test_sampled_resets_skip_an_extreme_aspect_ratio_image(tmp_path: Path) -> None:
    good = strip_png(tmp_path / "good.png", (300, 200))
    tasks = [Task(f"t{i}", "What is shown?", ("gray",), "exact", images=(str(good),)) for i in range(19)]
    tasks.append(Task("strip", "What is shown?", ("gray",), "exact", images=(str(strip_png(tmp_path / "s.png",
                                                                                            (6000, 20))),)))
    env = PixelVQAEnv(tasks=tasks)
    skipped = []
    for seed in range(60):
        _, info = env.reset(seed=seed)
        assert info["task_id"] != "strip"
        skipped += info.get("skipped_tasks", [])
    assert skipped and set(skipped) == {"strip"}  # drawn 1 time in 20 on average: skipped, not crashed
