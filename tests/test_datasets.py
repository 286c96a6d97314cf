"""Dataset loaders on tiny fixtures written in each source's published layout, and the official metrics."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from agents.scripted import OracleAgent
from pixel_gym.datasets import DATASETS, DatasetError, benchmark_score, hub, load_tasks
from pixel_gym.datasets.metrics import infovqa_anls, mvbench_match
from pixel_gym.datasets.video import decode_segments, segment_indices
from pixel_gym.env import PixelVQAEnv
from pixel_gym.reward import NO_CURIOSITY, anls
from pixel_gym.scores import pixel_reasoner_score
from pixel_gym.tasks import Box, ImageLoadError


def write_image(path: Path, size: tuple[int, int] = (64, 48), value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, 255 - value, 40)).save(path)
    return path


def write_json(path: Path, payload: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))
    return path


def write_video(path: Path, num_frames: int = 40, fps: int = 10) -> Path:
    """An mp4 whose frame i is uniformly gray at level 6 * i (so decoded frames reveal their index)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [np.full((64, 96, 3), 6 * i, dtype=np.uint8) for i in range(num_frames)]
    imageio.mimwrite(path, frames, fps=fps, codec="libx264", quality=10, macro_block_size=16)
    return path


def frame_index(image: Image.Image) -> int:
    return round(float(np.asarray(image).mean()) / 6)


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture
def vstar(tmp_path: Path) -> Path:
    """craigwu/vstar_bench: test_questions.jsonl plus per-category image + json annotation."""
    root = tmp_path / "vstar"
    write_image(root / "direct_attributes" / "sa_1.jpg", (400, 300))
    write_json(root / "direct_attributes" / "sa_1.json", {
        "target_object": ["glove"], "bbox": [[100, 50, 40, 30]], "question": "What is the material of the glove?",
        "options": ["rubber", "cotton", "leather", "nylon"]})
    write_image(root / "relative_position" / "sa_2.jpg", (300, 200))
    write_json(root / "relative_position" / "sa_2.json", {
        "target_object": ["cup", "dog"], "bbox": [[10, 10, 20, 20], [200, 100, 50, 40]],
        "question": "Is the cup on the left or right of the dog?", "options": ["left", "right"]})
    rows = [
        {"image": "direct_attributes/sa_1.jpg", "question_id": 0, "category": "direct_attributes", "label": "C",
         "text": "What is the material of the glove?\n(A) cotton\n(B) nylon\n(C) rubber\n(D) leather\n"
                 "Answer with the option's letter from the given choices directly."},
        {"image": "relative_position/sa_2.jpg", "question_id": 1, "category": "relative_position", "label": "A",
         "text": "Is the cup on the left or right of the dog?\n(A) left\n(B) right\n"
                 "Answer with the option's letter from the given choices directly."},
    ]
    (root / "test_questions.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root


@pytest.fixture
def tallyqa(tmp_path: Path) -> Path:
    root = tmp_path / "tallyqa"
    write_image(root / "val2014" / "COCO_val2014_000000000139.jpg")
    write_image(root / "VG_100K_2" / "2350.jpg")
    write_json(root / "test.json", [
        {"image": "val2014/COCO_val2014_000000000139.jpg", "question": "How many people are there?", "answer": 2,
         "issimple": True, "question_id": 11, "image_id": 139, "data_source": "amt"},
        {"image": "VG_100K_2/2350.jpg", "question": "How many dogs are sitting?", "answer": 0, "issimple": False,
         "question_id": 12, "image_id": 2350, "data_source": "imported_genome"},
    ])
    return root


@pytest.fixture
def infovqa(tmp_path: Path) -> Path:
    root = tmp_path / "infovqa"
    write_image(root / "infographicsvqa_images" / "37313.jpeg", (120, 400))
    write_json(root / "infographicsVQA_val_v1.0_withQT.json", {
        "dataset_name": "infographicVQA", "dataset_version": "1.0", "dataset_split": "val", "data": [
            {"questionId": 98313, "question": "Which year saw the most deaths?", "image_local_name": "37313.jpeg",
             "answers": ["1995", "in 1995"], "answer_type": ["single span"], "evidence": ["figure"],
             "operation/reasoning": ["comparison"]}]})
    return root


@pytest.fixture
def mvbench(tmp_path: Path) -> Path:
    """OpenGVLab/MVBench: json/<task>.json and videos under video/<source>/, tvqa as frame folders."""
    root = tmp_path / "mvbench"
    write_video(root / "video" / "ssv2_video" / "74225.webm.mp4")
    write_video(root / "video" / "star" / "Charades_v1_480" / "6H78U.mp4")
    for i in range(1, 31):
        write_image(root / "video" / "tvqa" / "frames_fps3_hq" / "clip_1" / f"{i:05d}.jpg", (32, 32), 6 * i)
    write_json(root / "json" / "action_antonym.json", [
        {"video": "74225.webm.mp4", "question": "What is the action performed by the person in the video?",
         "candidates": ["Not sure", "Scattering something", "Piling something up"], "answer": "Piling something up"}])
    write_json(root / "json" / "action_sequence.json", [
        {"video": "6H78U.mp4", "question": "What happened after the person took the food?",
         "candidates": ["Ate the medicine.", "Tidied up the blanket."], "answer": "Ate the medicine.",
         "start": 1.0, "end": 3.0}])
    write_json(root / "json" / "episodic_reasoning.json", [
        {"video": "clip_1", "question": "What did Sheldon do?", "candidates": ["sat", "stood", "ran"],
         "answer": "ran", "start": 2.0, "end": 8.0}])
    return root


@pytest.fixture
def release(tmp_path: Path) -> Path:
    """TIGER-Lab/PixelReasoner-RL-Data: release.parquet with images/ and videos/ (frames)."""
    root = tmp_path / "pixelreasoner"
    write_image(root / "images" / "a.jpg")
    write_image(root / "images" / "b.png")
    for i in range(4):
        write_image(root / "videos" / "v1" / f"frame_{i}.jpg", (32, 32), 40 * i)
    pd.DataFrame({
        "question": ["What is written on the sign?", "Compare the two images.", "What happens first?", "1+1?"],
        "image": [["images/a.jpg"], ["images/a.jpg", "images/b.png"], ["videos/v1"], []],
        "is_video": [False, False, True, False],
        "answer": [["stop"], ["left", "the left one"], ["B"], ["2"]],
        "qid": ["q0", "q1", "q2", "q3"],
    }).to_parquet(root / "release.parquet")
    return root


@pytest.fixture
def sft(tmp_path: Path) -> Path:
    root = tmp_path / "sft"
    write_image(root / "images" / "x.jpg")
    write_json(root / "sft_data.json", [{"qid": "x1", "message_list": [
        {"role": "system", "content": [{"type": "text", "text": "You are a helpful assistant."}]},
        {"role": "user", "content": [{"type": "image", "image": "images/x.jpg"},
                                     {"type": "text", "text": "What is on the plate?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Let me look. \\boxed{an apple}"}]},
    ]}])
    return root


# ------------------------------------------------------------------------------------------------- loaders


def test_vstar_jsonl_layout(vstar: Path) -> None:
    tasks = load_tasks("vstar", vstar)
    assert [t.id for t in tasks] == ["vstar/0", "vstar/1"]
    first = tasks[0]
    assert first.question == "What is the material of the glove?"
    assert first.choices == ("cotton", "nylon", "rubber", "leather") and first.answers == ("C",)
    record = json.loads((vstar / "test_questions.jsonl").read_text().splitlines()[0])
    assert first.prompt_text() == record["text"]  # shown exactly as the benchmark writes it
    assert first.metric == "choice" and first.category == "direct_attributes" and first.source == "vstar"
    assert first.target_boxes == (Box(100, 50, 140, 80, "glove"),)
    assert first.images[0].size() == (400, 300)
    assert len(tasks[1].target_boxes) == 2 and tasks[1].category == "relative_position"


def test_vstar_annotation_layout_shuffles_options_deterministically(vstar: Path) -> None:
    (vstar / "test_questions.jsonl").unlink()
    tasks = load_tasks("vstar", vstar)
    assert [t.id for t in tasks] == ["vstar/direct_attributes/sa_1", "vstar/relative_position/sa_2"]
    for task, correct in zip(tasks, ["rubber", "left"]):
        assert task.choices[ord(task.answers[0]) - ord("A")] == correct
    assert [t.choices for t in load_tasks("vstar", vstar)] == [t.choices for t in tasks]
    assert sorted(tasks[0].choices) == ["cotton", "leather", "nylon", "rubber"]


def test_tallyqa_and_complex_subset(tallyqa: Path) -> None:
    tasks = load_tasks("tallyqa", tallyqa)
    assert [(t.id, t.answers, t.category, t.metric) for t in tasks] == [
        ("tallyqa/test/11", ("2",), "simple", "count"), ("tallyqa/test/12", ("0",), "complex", "count")]
    complex_tasks = load_tasks("tallyqa_complex", tallyqa)
    assert [t.id for t in complex_tasks] == ["tallyqa/test/12"]
    assert complex_tasks[0].annotations["data_source"] == "imported_genome"


def test_infovqa_keeps_all_answers(infovqa: Path) -> None:
    (task,) = load_tasks("infovqa", infovqa)
    assert task.id == "infovqa/val/98313" and task.answers == ("1995", "in 1995") and task.metric == "anls"
    assert task.category == "single span" and task.annotations["evidence"] == ["figure"]
    assert task.images[0].size() == (120, 400)


def test_infovqa_test_split_without_answers_is_refused(infovqa: Path) -> None:
    write_json(infovqa / "infographicsVQA_test_v1.0.json", {"data": [
        {"questionId": 1, "question": "q", "image_local_name": "37313.jpeg"}]})
    with pytest.raises(DatasetError, match="infovqa/test/1.*no gold answers"):
        load_tasks("infovqa", infovqa, split="test")


def test_mvbench_video_frames_are_sampled_lazily_as_mvbench_does(mvbench: Path) -> None:
    decode_segments.cache_clear()
    tasks = {t.category: t for t in load_tasks("mvbench", mvbench)}
    assert set(tasks) == {"action_antonym", "action_sequence", "episodic_reasoning"}
    antonym = tasks["action_antonym"]
    assert antonym.answers == ("C",) and antonym.choices[2] == "Piling something up" and antonym.is_video
    assert len(antonym.video) == 16 and decode_segments.cache_info().currsize == 0  # nothing decoded yet
    expected = segment_indices(39, 10.0, 16)  # 40 frames at 10 fps, the whole clip
    assert [frame_index(f.open()) for f in antonym.video] == expected
    assert decode_segments.cache_info().currsize == 1  # one decode served all 16 frames
    bounded = tasks["action_sequence"]  # start 1 s, end 3 s: frames 10..30
    indices = [frame_index(f.open()) for f in bounded.video]
    assert indices == segment_indices(39, 10.0, 16, (1.0, 3.0)) and min(indices) >= 10 and max(indices) <= 30
    folder = tasks["episodic_reasoning"]  # 3 fps frame folder, 1-based, seconds 2..8 -> frames 6..24
    names = [Path(f.describe().split(" (task")[0]).name for f in folder.video]
    assert names == [f"{i:05d}.jpg" for i in segment_indices(30, 3.0, 16, (2.0, 8.0), first_index=1)]


def test_segment_indices_hand_computed() -> None:
    # 17 frames (max index 16), 4 segments of 4 frames: middles 2, 6, 10, 14
    assert segment_indices(16, 1.0, 4) == [2, 6, 10, 14]
    # bounded 2 s .. 6 s at 2 fps: frames 4..12, segments of 2: 5, 7, 9, 11
    assert segment_indices(100, 2.0, 4, (2.0, 6.0)) == [5, 7, 9, 11]


def test_pixelreasoner_rl_parquet(release: Path) -> None:
    tasks = load_tasks("pixelreasoner", release)
    assert [t.id for t in tasks] == ["pixelreasoner/release/q0", "pixelreasoner/release/q1",
                                     "pixelreasoner/release/q2"]  # the text-only row is skipped
    single, pair, video = tasks
    assert single.answers == ("stop",) and len(single.images) == 1 and single.metric == "pixel_reasoner"
    assert pair.answers == ("left", "the left one") and len(pair.images) == 2
    assert video.is_video and len(video.video) == 4 and video.category == "video"
    assert [Path(str(f.source)).name for f in video.video] == [f"frame_{i}.jpg" for i in range(4)]


def test_pixelreasoner_sft_json(sft: Path) -> None:
    (task,) = load_tasks("pixelreasoner_sft", sft)
    assert task.question == "What is on the plate?" and task.answers == ("an apple",)
    assert task.annotations["qid"] == "x1" and len(task.images) == 1


def test_mvbench_without_some_videos_loads_the_rest_and_reports_the_skipped(mvbench: Path, caplog) -> None:
    """The hub copy lacks video/nturgbd/ (its zip was deleted upstream): those questions are skipped, counted."""
    write_json(mvbench / "json" / "fine_grained_pose.json", [
        {"video": f"S001C001P001R001A0{k}_rgb.avi", "question": "What is the pose?", "candidates": ["sit", "stand"],
         "answer": "sit"} for k in (10, 11)])
    records = json.loads((mvbench / "json" / "action_sequence.json").read_text())
    records.append({**records[0], "start": 5.0, "end": 2.0})  # start after end: one frame 16 times otherwise
    write_json(mvbench / "json" / "action_sequence.json", records)
    with caplog.at_level("WARNING", logger="pixel_gym.datasets"):
        tasks = load_tasks("mvbench", mvbench)
    assert [t.id for t in tasks] == ["mvbench/action_antonym/0", "mvbench/action_sequence/0",
                                     "mvbench/episodic_reasoning/0"]
    assert [s.task_id for s in tasks.skipped] == ["mvbench/action_sequence/1", "mvbench/fine_grained_pose/0",
                                                  "mvbench/fine_grained_pose/1"]
    assert tasks.skip_counts() == {"action_sequence": 1, "fine_grained_pose": 2}
    assert tasks.skipped[0].reason == "start 5 s is after end 2 s"
    assert tasks.skipped[1].reason.startswith("video not found: ") and "nturgbd" in tasks.skipped[1].reason
    summary = tasks.skip_summary()
    assert summary.startswith("skipped 3 of 6 records: action_sequence 1 (mvbench/action_sequence/1: start 5 s")
    assert "; fine_grained_pose 2 (mvbench/fine_grained_pose/0: video not found" in summary
    assert caplog.messages == [f"mvbench: {summary}"]
    assert load_tasks("mvbench", mvbench, limit=1).skipped == ()  # only the records read are looked at
    for video in (mvbench / "video").rglob("*.mp4"):
        video.unlink()
    shutil.rmtree(mvbench / "video" / "tvqa")
    with pytest.raises(DatasetError, match="mvbench: no usable record in .*skipped 6 of 6 records"):
        load_tasks("mvbench", mvbench)


def test_infovqa_questions_unpacked_into_their_folder(infovqa: Path) -> None:
    """infographicsvqa_qas.zip unpacks to infographicsvqa_qas/*.json; those files load like root ones."""
    (infovqa / "infographicsvqa_qas").mkdir()
    moved = infovqa / "infographicsvqa_qas" / "infographicsVQA_val_v1.0_withQT.json"
    (infovqa / "infographicsVQA_val_v1.0_withQT.json").rename(moved)
    (task,) = load_tasks("infovqa", infovqa)
    assert task.id == "infovqa/val/98313" and task.answers == ("1995", "in 1995")
    assert task.images[0].size() == (120, 400)
    write_json(infovqa / "infographicsVQA_val_v1.0.json", {"data": []})  # a second val file: ambiguous
    with pytest.raises(DatasetError, match=r"found infographicsVQA_val_v1\.0\.json, infographicsvqa_qas/"):
        load_tasks("infovqa", infovqa)


def test_sft_parts_without_type_and_paths_from_the_root(sft: Path) -> None:
    """Qwen's tools read {"image": ...} without "type"; "/images/x.jpg" means <root>/images/x.jpg."""
    for i in range(3):
        write_image(sft / "videos" / "v" / f"{i}.jpg", (32, 32), 40 * i)
    user = {"role": "user", "content": [{"image": "/images/x.jpg"}, {"image": str(sft / "images" / "x.jpg")},
                                        {"text": "What is on the plate?"}]}
    answer = {"role": "assistant", "content": [{"text": "\\boxed{an apple}"}]}
    clip = {"role": "user", "content": [{"video": ["/videos/v/0.jpg", "videos/v/2.jpg"]}, {"text": "What moves?"}]}
    write_json(sft / "sft_data.json", [{"message_list": [user, answer]}, {"message_list": [clip, answer]}])
    task, video = load_tasks("pixelreasoner_sft", sft)
    assert task.question == "What is on the plate?" and task.answers == ("an apple",)
    assert [str(image.source) for image in task.images] == [str((sft / "images" / "x.jpg").absolute())] * 2
    assert video.question == "What moves?" and video.is_video
    assert [Path(str(frame.source)).name for frame in video.video] == ["0.jpg", "2.jpg"]
    write_image(sft.parent / "outside.jpg")
    for image, message in [("/../outside.jpg", "escapes the dataset root"),
                           ("/images/../../x.jpg", "escapes the dataset root"),
                           ("/etc/hostname", rf"image not found: {sft.absolute()}/etc/hostname"),
                           ("/", "the record's image path '' is empty")]:
        user["content"][0] = {"image": image}
        write_json(sft / "sft_data.json", [{"message_list": [user, answer]}])
        with pytest.raises(DatasetError, match=rf"sft_data\.json\[0\]: .*{message}"):
            load_tasks("pixelreasoner_sft", sft)


def test_limit_and_registry(tallyqa: Path) -> None:
    assert len(load_tasks("tallyqa", tallyqa, limit=1)) == 1
    assert load_tasks("tallyqa", tallyqa, limit=0) == []
    assert {"vstar", "tallyqa", "tallyqa_complex", "infovqa", "mvbench", "pixelreasoner",
            "pixelreasoner_sft"} <= set(DATASETS)
    with pytest.raises(ValueError, match="limit"):
        load_tasks("tallyqa", tallyqa, limit=-1)


# -------------------------------------------------------------------------------------------------- errors


def test_unknown_dataset_and_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="unknown dataset 'nope'.*vstar"):
        load_tasks("nope", tmp_path)
    with pytest.raises(DatasetError, match="dataset folder not found"):
        load_tasks("vstar", tmp_path / "missing")
    with pytest.raises(DatasetError, match="neither test_questions.jsonl"):
        load_tasks("vstar", tmp_path)
    with pytest.raises(DatasetError, match="missing file.*test.json"):
        load_tasks("tallyqa", tmp_path)
    with pytest.raises(DatasetError, match="MVBench question folder not found"):
        load_tasks("mvbench", tmp_path)


@pytest.mark.parametrize("image", ["../outside.jpg", "val2014/../../outside.jpg", "/etc/hostname"])
def test_paths_escaping_the_root_are_refused(tallyqa: Path, image: str) -> None:
    write_image(tallyqa.parent / "outside.jpg")
    write_json(tallyqa / "test.json", [{"image": image, "question": "How many?", "answer": 1, "issimple": True,
                                        "question_id": 7}])
    with pytest.raises(DatasetError, match="task tallyqa/test/7: path .* escapes the dataset root"):
        load_tasks("tallyqa", tallyqa)


def test_escapes_refused_in_every_layout(vstar: Path, release: Path, mvbench: Path) -> None:
    rows = [json.loads(line) for line in (vstar / "test_questions.jsonl").read_text().splitlines()]
    rows[1]["image"] = "../../x.jpg"
    (vstar / "test_questions.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DatasetError, match="task vstar/1: path .* escapes"):
        load_tasks("vstar", vstar)
    frame = pd.read_parquet(release / "release.parquet")
    frame.at[0, "image"] = ["../images/a.jpg"]
    frame.to_parquet(release / "release.parquet")
    with pytest.raises(DatasetError, match="task pixelreasoner/release/q0: path .* escapes"):
        load_tasks("pixelreasoner", release)
    write_json(mvbench / "json" / "action_antonym.json", [
        {"video": "../../../v.mp4", "question": "q", "candidates": ["a", "b"], "answer": "a"}])
    with pytest.raises(DatasetError, match="task mvbench/action_antonym/0: path .* escapes"):
        load_tasks("mvbench", mvbench)


def test_text_that_is_not_utf8_names_the_file_and_line(vstar: Path, tallyqa: Path) -> None:
    lines = (vstar / "test_questions.jsonl").read_bytes().splitlines(keepends=True)
    (vstar / "test_questions.jsonl").write_bytes(lines[0] + lines[1].replace(b"left", "l\xe9ft".encode("latin-1")))
    with pytest.raises(DatasetError, match=r"test_questions\.jsonl:2: test_questions\.jsonl is not UTF-8 text "
                                           r"\(invalid continuation byte at byte \d+ of line 2\)"):
        load_tasks("vstar", vstar)
    (vstar / "test_questions.jsonl").write_bytes(b"\xef\xbb\xbf" + b"".join(lines))  # a UTF-8 BOM is fine
    assert len(load_tasks("vstar", vstar)) == 2
    (tallyqa / "test.json").write_bytes(b'[{"question": "\xff"}]')
    with pytest.raises(DatasetError, match=r"test\.json is not UTF-8 text \(invalid start byte at byte 15\)"):
        load_tasks("tallyqa", tallyqa)


@pytest.mark.parametrize("image", ["", ".", " ", "direct_attributes/.."])
def test_empty_image_paths_are_named(vstar: Path, tallyqa: Path, image: str) -> None:
    rows = [json.loads(line) for line in (vstar / "test_questions.jsonl").read_text().splitlines()]
    (vstar / "test_questions.jsonl").write_text(json.dumps({**rows[0], "image": image}))
    with pytest.raises(DatasetError, match=rf"test_questions\.jsonl:1: the record's image path '{image}' is empty"):
        load_tasks("vstar", vstar)
    write_json(tallyqa / "test.json", [{"image": image, "question": "How many?", "answer": 1, "question_id": 7}])
    with pytest.raises(DatasetError, match=rf"test\.json\[0\]: the record's image path '{image}' is empty"):
        load_tasks("tallyqa", tallyqa)


@pytest.mark.parametrize("image", ["../../x.jpg", "/etc/hostname.jpg", "direct_attributes/../../x.jpg"])
def test_escaping_image_paths_are_reported_at_their_own_line(vstar: Path, image: str) -> None:
    """Not under the name of the json sidecar derived from them ("x.json"), but the record's file and line."""
    rows = [json.loads(line) for line in (vstar / "test_questions.jsonl").read_text().splitlines()]
    rows[1]["image"] = image
    (vstar / "test_questions.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DatasetError, match=rf"test_questions\.jsonl:2: task vstar/1: path '{image}' escapes the "
                                           r"dataset root"):
        load_tasks("vstar", vstar)


def test_missing_images_name_the_task(tallyqa: Path, infovqa: Path) -> None:
    (tallyqa / "VG_100K_2" / "2350.jpg").unlink()
    with pytest.raises(DatasetError, match="task tallyqa/test/12: image not found: .*2350.jpg"):
        load_tasks("tallyqa", tallyqa)
    (infovqa / "infographicsvqa_images" / "37313.jpeg").unlink()
    with pytest.raises(DatasetError, match="task infovqa/val/98313: image '37313.jpeg' not found"):
        load_tasks("infovqa", infovqa)


def test_corrupt_files_fail_when_opened_naming_the_task(tallyqa: Path, mvbench: Path) -> None:
    (tallyqa / "VG_100K_2" / "2350.jpg").write_bytes(b"not a jpeg at all")
    task = load_tasks("tallyqa", tallyqa)[1]  # loading checks existence only
    with pytest.raises(ImageLoadError, match="task tallyqa/test/12"):
        task.images[0].open()
    (mvbench / "video" / "ssv2_video" / "74225.webm.mp4").write_bytes(b"\x00" * 64)
    decode_segments.cache_clear()
    video_task = load_tasks("mvbench", mvbench)[0]
    with pytest.raises(ImageLoadError, match="task mvbench/action_antonym/0: cannot decode video"):
        video_task.video[0].open()


@pytest.mark.parametrize(("record", "message"), [
    ({"image": "val2014/COCO_val2014_000000000139.jpg", "question": "How many?", "issimple": True,
      "question_id": 1}, "missing field 'answer'"),
    ({"image": "val2014/COCO_val2014_000000000139.jpg", "question": "How many?", "answer": "two",
      "issimple": True, "question_id": 1}, "field 'answer' should be int"),
    ({"image": "val2014/COCO_val2014_000000000139.jpg", "question": "How many?", "answer": True,
      "issimple": True, "question_id": 1}, "field 'answer' should be int"),
    ("just a string", "expected a JSON object"),
])
def test_malformed_records_are_reported_with_their_place(tallyqa: Path, record: object, message: str) -> None:
    write_json(tallyqa / "test.json", [record])
    with pytest.raises(DatasetError, match=rf"test\.json\[0\].*{message}"):
        load_tasks("tallyqa", tallyqa)


def test_malformed_files_and_duplicates(tallyqa: Path, vstar: Path, mvbench: Path, release: Path) -> None:
    (tallyqa / "test.json").write_text("{not json")
    with pytest.raises(DatasetError, match="test.json is not valid JSON"):
        load_tasks("tallyqa", tallyqa)
    write_json(tallyqa / "test.json", [{"image": "val2014/COCO_val2014_000000000139.jpg", "question": "q",
                                        "answer": 1, "question_id": 5}] * 2)
    with pytest.raises(DatasetError, match="tallyqa/test/5' occurs twice"):
        load_tasks("tallyqa", tallyqa)
    (vstar / "test_questions.jsonl").write_text(json.dumps(
        {"image": "direct_attributes/sa_1.jpg", "question_id": 0, "label": "A", "text": "Which color?"}))
    with pytest.raises(DatasetError, match="no option lines"):
        load_tasks("vstar", vstar)
    write_json(mvbench / "json" / "action_antonym.json", [
        {"video": "74225.webm.mp4", "question": "q", "candidates": ["a", "b"], "answer": "c"}])
    with pytest.raises(DatasetError, match="answer 'c' is not one of the candidates"):
        load_tasks("mvbench", mvbench)
    pd.DataFrame({"question": ["q"], "image": [["images/a.jpg"]]}).to_parquet(release / "release.parquet")
    with pytest.raises(DatasetError, match=r"missing columns \['answer', 'qid'\]"):
        load_tasks("pixelreasoner", release)


def test_hub_datasets_download_and_unzip_safely(tmp_path: Path, tallyqa: Path, monkeypatch) -> None:
    """`hf://` ids go through snapshot_download (stubbed: no network in tests); archives are unpacked once."""
    import huggingface_hub

    def fake_snapshot(repo_id: str, repo_type: str, local_dir: Path) -> str:
        assert (repo_id, repo_type) == ("someone/tally", "dataset")
        Path(local_dir).mkdir(parents=True, exist_ok=True)
        (Path(local_dir) / "test.json").write_text((tallyqa / "test.json").read_text())
        with zipfile.ZipFile(Path(local_dir) / "images.zip", "w") as bundle:
            for image in tallyqa.rglob("*.jpg"):
                bundle.write(image, image.relative_to(tallyqa))
        return str(local_dir)

    monkeypatch.setenv("PIXEL_GYM_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    assert len(load_tasks("tallyqa", "hf://someone/tally")) == 2
    assert (tmp_path / "cache" / "someone--tally" / "images.zip.extracted").exists()
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as bundle:
        bundle.writestr("../../escaped.txt", "x")
    with pytest.raises(DatasetError, match="escapes"):
        hub.extract_once(evil)
    assert not (tmp_path.parent / "escaped.txt").exists()


def test_loaded_tasks_play_in_the_env(vstar: Path, mvbench: Path) -> None:
    tasks = load_tasks("vstar", vstar) + load_tasks("mvbench", mvbench)
    env = PixelVQAEnv(tasks=tasks, budgets="compact", curiosity=NO_CURIOSITY)
    agent = OracleAgent(env)
    for task in tasks:
        obs, _ = env.reset(seed=0, options={"task": task})
        terminated = truncated = False
        while not (terminated or truncated):
            obs, _, terminated, truncated, info = env.step(agent.act(obs))
        assert terminated and info["correctness"] == 1.0
        assert benchmark_score(env.episode.answer, task) == 1.0
    assert env.episode.task.is_video and len(obs["images"]) == 16


# ------------------------------------------------------------------------------------------------- metrics


def test_infovqa_anls_matches_the_official_script() -> None:
    assert infovqa_anls("  Paris ", ["paris"]) == 1.0
    assert infovqa_anls("1995", ["1996", "1995"]) == 1.0
    # the official script divides by the longer *raw* length: "parus  " has 7 characters, distance 1
    assert infovqa_anls("parus  ", ["Paris"]) == pytest.approx(1 - 1 / 7)
    assert anls("parus  ", ["Paris"]) == pytest.approx(1 - 1 / 5)  # pixel_gym.reward normalizes first
    assert infovqa_anls("ax", ["ab"]) == 0.5  # exactly tau is kept
    assert infovqa_anls("abc", ["xyz"]) == 0.0
    assert infovqa_anls("", ["x"]) == 0.0


def test_mvbench_check_ans() -> None:
    assert mvbench_match("A", "A") == 1.0
    assert mvbench_match("(A) a man is running", "A") == 1.0
    assert mvbench_match("A. running", "A") == 1.0
    assert mvbench_match("b", "A") == 0.0
    assert mvbench_match("Answer: A", "A") == 0.0  # the first token must be the option
    assert mvbench_match("a man", "A") == 1.0  # the official check's known leniency
    assert mvbench_match(")", "A") == 0.0 and mvbench_match("", "A") == 0.0
    # the whole prediction is split at spaces only, as the official code does: "a\nthe" is the first token
    assert mvbench_match("A\nThe man runs.", "A") == 0.0
    assert mvbench_match("(A)\nThe man runs.", "A") == 1.0  # "(a)" is inside the token "(a)\nthe"
    assert mvbench_match("  A", "A") == 1.0  # the prediction is stripped first (the official outputs are)
    assert mvbench_match("h", "H") == 0.0  # no letter a-g: "the model doesn't follow instructions"


def test_released_rule_and_benchmark_scores(tallyqa: Path, vstar: Path, infovqa: Path, mvbench: Path) -> None:
    assert pixel_reasoner_score(" Red ", ["red"]) == 1.0
    assert pixel_reasoner_score("3.0", ["3"]) == 1.0
    assert pixel_reasoner_score("three", ["3"]) == 0.0
    simple, complex_task = load_tasks("tallyqa", tallyqa)
    assert benchmark_score("There are 2 people.", simple) == 1.0
    assert benchmark_score("zero", complex_task) == 1.0 and benchmark_score("1", complex_task) == 0.0
    glove = load_tasks("vstar", vstar)[0]
    assert [benchmark_score(p, glove) for p in ("C", "(C)", "C. rubber", "rubber", "A", "")] == [1, 1, 1, 1, 0, 0]
    (info,) = load_tasks("infovqa", infovqa)
    assert benchmark_score("in 1995", info) == 1.0 and benchmark_score("1996", info) == pytest.approx(0.75)
    antonym = load_tasks("mvbench", mvbench)[0]
    assert benchmark_score("C", antonym) == 1.0 and benchmark_score("Piling something up", antonym) == 0.0


def test_gym_make_reads_a_dataset_folder(vstar: Path) -> None:
    import gymnasium as gym

    import pixel_gym  # noqa: F401  (registers the ids)

    env = gym.make("PixelVQA-v0", dataset="vstar", data_dir=str(vstar))
    obs, info = env.reset(options={"index": 1})
    assert "left or right" in obs["question"] and info["task_id"] == env.unwrapped.tasks[1].id
    with pytest.raises(ValueError, match="needs data_dir"):
        gym.make("PixelVQA-v0", dataset="vstar")
