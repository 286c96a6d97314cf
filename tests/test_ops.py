"""Pixel operations: box resolution, zoom, budgets, frame selection, decoding and caching."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pixel_gym.ops import (
    OpError,
    PixelBudget,
    fit_to_budget,
    resolve_box,
    sample_frame_indices,
    select_frames,
    smart_resize,
    validate_frame_indices,
    zoom_in,
)
from pixel_gym.tasks import MAX_IMAGE_PIXELS, ImageLoadError, ImageRef

BUDGET = PixelBudget.tokens(64, 256)


def gradient_image(width: int = 1000, height: int = 800) -> Image.Image:
    xs = np.linspace(0, 255, width, dtype=np.float32)
    ys = np.linspace(0, 255, height, dtype=np.float32)
    array = np.stack(np.broadcast_arrays(xs[None, :], ys[:, None], np.full((height, width), 128.0)), axis=-1)
    return Image.fromarray(array.astype(np.uint8))


@pytest.mark.parametrize(("height", "width"), [(1582, 2246), (100, 100), (28, 5000), (4000, 3000), (10, 10)])
def test_smart_resize_keeps_grid_budget_and_aspect(height: int, width: int) -> None:
    new_h, new_w = smart_resize(height, width, BUDGET)
    assert new_h % 28 == 0 and new_w % 28 == 0
    assert BUDGET.min_pixels <= new_h * new_w <= BUDGET.max_pixels
    assert abs(math.log((new_w / new_h) / (width / height))) < 0.35


def test_normalized_box_gets_paper_padding() -> None:
    assert resolve_box([0.4, 0.4, 0.5, 0.5], (1000, 800)) == (300, 240, 600, 480)


def test_pixel_box_is_divided_by_size_then_padded() -> None:
    # crop_image_normalized with pixel values: divided by the image size, then the same 0.1 padding
    assert resolve_box([400, 320, 500, 400], (1000, 800)) == (300, 240, 600, 480)


def test_a_value_of_one_makes_the_box_pixels_unless_the_old_rule_is_asked() -> None:
    # released: normalized only if all four < 1. [0.5, 0.5, 1, 1] px of 1000x800: 0.0005 - 0.1 -> 0, 0.001 + 0.1
    # -> 0.101 * 1000 = 101, 0.10125 * 800 = 81
    assert resolve_box([0.5, 0.5, 1.0, 1.0], (1000, 800)) == (0, 0, 101, 81)
    assert resolve_box([0.5, 0.5, 1.0, 1.0], (1000, 800), normalized_if="all_at_most_1") == (400, 320, 1000, 800)


def test_explicit_pixel_convention_reads_small_values_as_pixels() -> None:
    box = resolve_box([0, 0, 30, 30], (1000, 800), convention="pixels", padding=0.0)
    assert box == (0, 0, 30, 30)


def test_box_partly_outside_is_clamped() -> None:
    assert resolve_box([-50, -50, 200, 200], (1000, 800), padding=0.0) == (0, 0, 200, 200)


def test_float_box_is_rounded_as_pil_rounds_it() -> None:
    # 0.1234 + 0.1 padding on each side: x 0.0234 * 1000 = 23.4 -> 23, 0.2234 * 1000 = 223.4 -> 223;
    # y 0.0234 * 800 = 18.72 -> 19, 0.2234 * 800 = 178.72 -> 179
    assert resolve_box([0.1234, 0.1234, 0.1234, 0.1234], (1000, 800)) == (23, 19, 223, 179)


def test_point_and_inverted_boxes_are_padded_not_refused_unless_asked() -> None:
    assert resolve_box([0.5, 0.5, 0.5, 0.5], (1000, 800)) == (400, 320, 600, 480)
    # inverted by 0.05: padded to [0.4, 0.4, 0.55, 0.7]
    assert resolve_box([0.5, 0.5, 0.45, 0.6], (1000, 800)) == (400, 320, 550, 560)
    for bbox in ([0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.45, 0.6]):
        with pytest.raises(OpError, match="empty or inverted"):
            resolve_box(bbox, (1000, 800), refuse_degenerate=True)


@pytest.mark.parametrize(
    ("bbox", "message"),
    [
        ([0.9, 0.5, 0.1, 0.6], "inverted even after padding"),
        ([1200, 900, 1300, 1000], "too small: 0x0"),
        ([-300, -300, -100, -100], "too small: 0x0"),
        ([0.1, 0.2, 0.3], "4 numbers"),
        ([0.1, float("nan"), 0.3, 0.4], "finite"),
        ([0.1, float("inf"), 0.3, 0.4], "finite"),
        ([0.1, 10**400, 0.3, 0.4], "finite"),  # float(int) overflows (issue 11 item 2)
        (["a", 0, 1, 1], "numbers"),
        ("0,0,1,1", "list of 4 numbers"),
        ([True, 0, 1, 1], "numbers"),
    ],
)
def test_bad_boxes_raise_clear_errors(bbox: object, message: str) -> None:
    with pytest.raises(OpError, match=message):
        resolve_box(bbox, (1000, 800))  # type: ignore[arg-type]


def test_crop_must_exceed_28_pixels_each_side() -> None:
    assert resolve_box([10, 10, 39, 39], (1000, 800), padding=0.0) == (10, 10, 39, 39)  # 29x29: kept
    with pytest.raises(OpError, match="too small: 28x28"):
        resolve_box([10, 10, 38, 38], (1000, 800), padding=0.0)


def test_zoom_enlarges_small_crop_into_budget_and_keeps_content() -> None:
    image = gradient_image()
    result = zoom_in(image, [0.5, 0.5, 0.55, 0.55], BUDGET, padding=0.0)
    assert result.box == (500, 400, 550, 440)
    width, height = result.image.size
    assert width * height >= BUDGET.min_pixels and width % 28 == 0 and height % 28 == 0
    # the red channel encodes x: the crop's left edge must be about x=500 of the original
    assert abs(int(np.asarray(result.image)[height // 2, 2, 0]) - round(500 / 999 * 255)) <= 3


def test_huge_crop_is_shrunk_into_budget() -> None:
    image = gradient_image(3000, 2000)
    result = zoom_in(image, [0.0, 0.0, 1.0, 1.0], BUDGET)
    assert result.image.width * result.image.height <= BUDGET.max_pixels


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**9, 10**9)), max_size=6))
def test_resolve_box_never_fails_other_than_op_error(bbox: list) -> None:
    try:
        x1, y1, x2, y2 = resolve_box(bbox, (640, 480))
    except OpError:
        return
    assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 480
    assert x2 - x1 > 28 and y2 - y1 > 28


def test_frame_indices_are_one_based_duplicates_kept_and_bounded() -> None:
    assert validate_frame_indices([3, 1, 3, 16], 16) == [2, 0, 2, 15]  # the released tool keeps duplicates
    with pytest.raises(OpError, match="out of range"):
        validate_frame_indices([0], 16)
    with pytest.raises(OpError, match="out of range"):
        validate_frame_indices([17], 16)
    with pytest.raises(OpError, match="no more than 8 frames"):
        validate_frame_indices(list(range(1, 10)), 16)
    with pytest.raises(OpError, match="empty"):
        validate_frame_indices([], 16)
    with pytest.raises(OpError, match="integers"):
        validate_frame_indices([1.5], 16)


def test_select_frames_returns_full_resolution_frames() -> None:
    frames = [Image.new("RGB", (640, 360), (i * 10, 0, 0)) for i in range(16)]
    chosen = select_frames(frames, [2, 5], PixelBudget.tokens(16, 512))
    assert [np.asarray(f)[0, 0, 0] for f in chosen] == [10, 40]
    assert abs(chosen[0].width - 640) <= 28 and abs(chosen[0].height - 360) <= 28


def test_sample_frame_indices_spread_over_the_clip() -> None:
    assert sample_frame_indices(32, 16) == list(range(1, 32, 2))
    assert sample_frame_indices(8, 16) == list(range(8))


def test_fit_to_budget_is_identity_when_already_on_grid() -> None:
    image = Image.new("RGB", (280, 280))
    assert fit_to_budget(image, BUDGET) is image


# --- decoding -----------------------------------------------------------------------------------------------


def jpeg_bytes(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    gradient_image(width, height).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_image_ref_reads_paths_bytes_arrays_and_factories(tmp_path) -> None:
    path = tmp_path / "a.jpg"
    path.write_bytes(jpeg_bytes(300, 200))
    array = np.zeros((20, 30, 4), dtype=np.uint8)
    for ref in [ImageRef(path), ImageRef(str(path)), ImageRef(path.read_bytes())]:
        assert ref.size() == (300, 200) and ref.open().size == (300, 200) and ref.open().mode == "RGB"
    assert ImageRef(array).open().size == (30, 20)
    assert ImageRef(lambda: Image.new("L", (5, 6))).open().mode == "RGB"


def test_jpeg_draft_decoding_reduces_work() -> None:
    ref = ImageRef(jpeg_bytes(2246, 1582))
    drafted = ref.open(draft_size=(500, 350))
    assert drafted.width < 2246 and drafted.width >= 500


def test_missing_corrupt_and_bomb_images_raise_image_load_error(tmp_path) -> None:
    with pytest.raises(ImageLoadError, match="not found"):
        ImageRef(tmp_path / "missing.png").open()
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(ImageLoadError, match="cannot decode"):
        ImageRef(corrupt).open()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(jpeg_bytes(400, 300)[:600])
    with pytest.raises(ImageLoadError):
        ImageRef(truncated).open()
    side = int(math.sqrt(MAX_IMAGE_PIXELS)) + 100
    bomb = tmp_path / "bomb.png"
    Image.new("1", (side, side)).save(bomb)
    with pytest.raises(ImageLoadError, match="over the limit"):
        ImageRef(bomb).open()
    with pytest.raises(ImageLoadError, match="over the limit"):
        ImageRef(bomb).size()
