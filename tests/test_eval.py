"""The evaluation harness: agents through the env, resumable result files, summary table and gallery."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from benchmarks.eval import MAX_NEW_TOKENS, main, parse_args, read_records, summarize
from benchmarks.perf_eval import write_vstar_folder


def run(out: Path, *args: str) -> dict:
    return main(["--out", str(out), "--budgets", "compact", "--batch-size", "3", *args])


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def rows(summary: dict, suite: str) -> dict[str, dict]:
    return {row["category"]: row for row in summary["rows"] if row["suite"] == suite}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data folder with one dataset per subfolder: V* (json layout) and TallyQA."""
    data = tmp_path / "data"
    write_vstar_folder(data / "vstar", 2)
    tally = data / "tallyqa"
    (tally / "VG_100K").mkdir(parents=True)
    records = []
    for i in range(3):
        Image.new("RGB", (80, 60), (30 * i, 90, 160)).save(tally / "VG_100K" / f"{i}.jpg")
        records.append({"image": f"VG_100K/{i}.jpg", "question": "How many cats?", "answer": i,
                        "issimple": i == 0, "question_id": i})
    (tally / "test.json").write_text(json.dumps(records))
    return data


def test_oracle_scores_one_with_summary_and_gallery(tmp_path: Path) -> None:
    summary = run(tmp_path / "out", "--agent", "oracle", "--suite", "fine_detail,video", "--limit", "4")
    for suite in ("fine_detail", "video"):
        overall = rows(summary, suite)["all"]
        assert overall["n"] == 4 and overall["score"] == 100.0 and overall["rapr"] == 100.0
        records = lines(tmp_path / "out" / f"{suite}.jsonl")
        assert {r["task_id"] for r in records} == {f"{suite}/test/{i}" for i in range(4)}
        assert all(r["num_ops"] == 1 and r["turns"] == 2 and r["ops"] for r in records)
        with Image.open(summary["galleries"][suite]) as gallery:
            assert gallery.format == "PNG" and gallery.height > 4 * 100
    table = (tmp_path / "out" / "summary.md").read_text()
    assert "| suite | category | n | metric | score | pixel_reasoner | RaPR % |" in table
    assert "| fine_detail | all | 4 | accuracy | 100.0 | 100.0 | 100.0 |" in table  # official, released, RaPR
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["rows"] == summary["rows"]


def test_blind_agent_never_looks(tmp_path: Path) -> None:
    summary = run(tmp_path / "out", "--agent", "blind", "--suite", "fine_detail", "--limit", "6")
    overall = rows(summary, "fine_detail")["all"]
    assert overall["rapr"] == 0.0 and overall["ops_per_episode"] == 0.0 and overall["turns_per_episode"] == 1.0
    assert 0.0 <= overall["score"] <= 100.0
    assert all(not r["used_pixel_op"] and r["answered"] for r in lines(tmp_path / "out" / "fine_detail.jsonl"))


def test_restart_only_plays_new_tasks(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(out, "--agent", "random", "--suite", "counting", "--limit", "4")
    first = lines(out / "counting.jsonl")
    with (out / "counting.jsonl").open("a") as results:
        results.write('{"task_id": "counting/test/9", "cut short')  # a crash mid-write
    summary = run(out, "--agent", "random", "--suite", "counting", "--limit", "8")
    text = (out / "counting.jsonl").read_text().splitlines()
    assert len(text) == 9 and text[:4] == [json.dumps(r) for r in first]  # 4 kept, 1 broken line, 4 new
    assert [r["task_id"] for r in map(json.loads, text[5:])] == [f"counting/test/{i}" for i in range(4, 8)]
    assert rows(summary, "counting")["all"]["n"] == 8
    assert rows(run(out, "--agent", "random", "--suite", "counting", "--limit", "2"), "counting")["all"]["n"] == 2
    with pytest.raises(SystemExit, match="other settings"):
        run(out, "--agent", "oracle", "--suite", "counting", "--limit", "2")


def test_dataset_suites_from_a_data_folder(tmp_path: Path, data_dir: Path) -> None:
    summary = run(tmp_path / "out", "--agent", "oracle", "--suite", "vstar,tallyqa_complex",
                  "--data-dir", str(data_dir))
    assert rows(summary, "vstar")["all"]["score"] == 100.0 and rows(summary, "vstar")["all"]["rapr"] == 100.0
    assert rows(summary, "vstar")["direct_attributes"]["n"] == 2
    tally = rows(summary, "tallyqa_complex")
    assert tally["all"]["n"] == 2 and tally["complex"]["score"] == 100.0 and tally["all"]["rapr"] == 0.0
    with pytest.raises(SystemExit, match="unknown suite 'nope'"):
        run(tmp_path / "out", "--agent", "oracle", "--suite", "nope", "--data-dir", str(data_dir))


def test_unreadable_images_are_recorded_then_retried(tmp_path: Path, data_dir: Path) -> None:
    (data_dir / "tallyqa" / "VG_100K" / "1.jpg").write_bytes(b"broken")
    out = tmp_path / "out"
    summary = run(out, "--agent", "oracle", "--suite", "tallyqa", "--data-dir", str(data_dir))
    records = read_records(out / "tallyqa.jsonl")
    assert "tallyqa/test/1" in records["tallyqa/test/1"]["error"]
    assert [r["score"] for r in records.values()] == [1.0, 0.0, 1.0]
    assert rows(summary, "tallyqa")["all"]["errors"] == 1
    Image.new("RGB", (80, 60)).save(data_dir / "tallyqa" / "VG_100K" / "1.jpg")
    run(out, "--agent", "oracle", "--suite", "tallyqa", "--data-dir", str(data_dir))
    assert len(lines(out / "tallyqa.jsonl")) == 4 and "error" not in read_records(out / "tallyqa.jsonl")[
        "tallyqa/test/1"]


def test_vlm_agent_through_the_harness(tmp_path: Path, tiny_model_path: Path) -> None:
    summary = run(tmp_path / "out", "--agent", "vlm", "--model", str(tiny_model_path), "--suite", "fine_detail",
                  "--limit", "2", "--max-turns", "1", "--max-new-tokens", "4")
    assert rows(summary, "fine_detail")["all"]["n"] == 2
    assert all(r["turns"] == 1 for r in lines(tmp_path / "out" / "fine_detail.jsonl"))


def test_openai_agent_through_the_harness(tmp_path: Path, chat_server) -> None:
    endpoint, _ = chat_server(lambda request: "\\boxed{A}")
    run(tmp_path / "out", "--agent", "openai", "--model", "served", "--endpoint", endpoint, "--suite",
        "fine_detail", "--limit", "3")
    assert [r["answer"] for r in lines(tmp_path / "out" / "fine_detail.jsonl")] == ["A", "A", "A"]


def test_both_scores_in_every_summary_row(tmp_path: Path, data_dir: Path, chat_server) -> None:
    endpoint, requests = chat_server(lambda request: "I count \\boxed{one}")
    summary = run(tmp_path / "out", "--agent", "openai", "--model", "served", "--endpoint", endpoint, "--suite",
                  "tallyqa_complex", "--data-dir", str(data_dir))
    # golds 1 and 2: the official count metric reads "one" as 1 (1 of 2); the released rule wants "1" (0 of 2)
    assert [(r["score"], r["pixel_reasoner"]) for r in lines(tmp_path / "out" / "tallyqa_complex.jsonl")] == [
        (1.0, 0.0), (0.0, 0.0)]
    for row in rows(summary, "tallyqa_complex").values():
        assert (row["score"], row["pixel_reasoner"]) == (50.0, 0.0)
    table = (tmp_path / "out" / "summary.md").read_text()
    assert "| tallyqa_complex | complex | 2 | accuracy | 50.0 | 0.0 | 0.0 |" in table
    assert {r["max_tokens"] for r in requests} == {2048} and summary["settings"]["max_new_tokens"] == 2048


def test_summary_of_hand_made_records() -> None:
    base = {"suite": "infovqa", "category": "", "metric": "anls", "gold": ["0.5"], "used_pixel_op": False,
            "num_ops": 1, "turns": 2}
    records = [
        {**base, "task_id": "a", "answer": "0.55", "score": 0.75, "pixel_reasoner": 0.0},
        {**base, "task_id": "b", "answer": "0.5", "score": 1.0, "pixel_reasoner": 1.0},
        {**base, "task_id": "c", "answer": "1/2", "score": 0.0},  # written before the released score existed
    ]
    (row,) = summarize(records)
    assert row["metric"] == "ANLS" and row["score"] == pytest.approx(175 / 3)
    assert row["pixel_reasoner"] == pytest.approx(200 / 3)  # 0, 1, and 1/2 == 0.5 under math_verify
    assert (row["rapr"], row["rapr_ops"]) == (0.0, 0.0)  # no tool-call count: RaPR falls back to successful ops
    records[0]["num_tool_calls"] = 2
    assert summarize(records)[0]["rapr"] == pytest.approx(100 / 3)
    assert parse_args(["--agent", "oracle", "--suite", "vstar", "--out", "x"]).max_new_tokens == MAX_NEW_TOKENS == 2048


def test_rapr_counts_tool_calls_and_rapr_ops_successful_ops(tmp_path: Path, chat_server) -> None:
    def reply(request: dict) -> str:  # a malformed tool call on the first turn, then an answer
        return '<tool_call>{"name": "crop_image_normalized", bad</tool_call>' if len(request["messages"]) <= 2 \
            else "\\boxed{A}"

    endpoint, _ = chat_server(reply)
    summary = run(tmp_path / "out", "--agent", "openai", "--model", "served", "--endpoint", endpoint, "--suite",
                  "fine_detail", "--limit", "2")
    overall = rows(summary, "fine_detail")["all"]
    assert (overall["rapr"], overall["rapr_ops"], overall["ops_per_episode"]) == (100.0, 0.0, 0.0)
    assert [(r["num_tool_calls"], r["num_errors"], r["turns"]) for r in lines(tmp_path / "out" / "fine_detail.jsonl")
            ] == [(1, 1, 2), (1, 1, 2)]


def test_skipped_dataset_records_are_in_the_summary(tmp_path: Path) -> None:
    """MVBench questions whose video is missing (as on the hub) are counted in summary.json and the table."""
    root = tmp_path / "data" / "mvbench"
    frames = root / "video" / "tvqa" / "frames_fps3_hq" / "clip_1"
    frames.mkdir(parents=True)
    for i in range(1, 31):
        Image.new("RGB", (32, 32), (6 * i, 80, 120)).save(frames / f"{i:05d}.jpg")
    (root / "json").mkdir()
    question = {"question": "What did Sheldon do?", "candidates": ["sat", "stood", "ran"], "answer": "ran",
                "start": 2.0, "end": 8.0}
    records = [{"video": "clip_1", **question}, {"video": "clip_gone", **question}]
    (root / "json" / "episodic_reasoning.json").write_text(json.dumps(records))
    summary = run(tmp_path / "out", "--agent", "oracle", "--suite", "mvbench", "--data-dir", str(tmp_path / "data"))
    assert summary["skipped"] == {"mvbench": {"episodic_reasoning": 1}}
    assert rows(summary, "mvbench")["all"]["n"] == 1
    assert "skipped in mvbench (missing or unusable records): 1" in (tmp_path / "out" / "summary.md").read_text()
