"""The active run: the kit's public functions record their calls into it, and only into it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import sdsam_nb
from sdsam_nb import recording, runs
from sdsam_nb.runs.chain import compare_calls


@pytest.fixture
def active(tmp_path):
    run = runs.start("04_composite_background", {"output_root": str(tmp_path)}, echo=False)
    yield run
    recording.deactivate()


def _calls(run) -> list[dict]:
    return run.record["executions"][-1].get("calls", [])


def test_outside_a_run_nothing_is_recorded_and_the_result_is_the_same(
    tmp_path, active, subject_image, subject_mask
):
    background = Image.new("RGB", subject_image.size, (20, 120, 40))
    inside = sdsam_nb.composite(subject_image, subject_mask, background, feather=2)
    active.finish()  # no longer active
    assert recording.active_run() is None
    outside = sdsam_nb.composite(subject_image, subject_mask, background, feather=2)
    assert np.array_equal(np.asarray(inside), np.asarray(outside))
    (call,) = _calls(active)
    assert call["call"] == "composite" and call["seconds"] >= 0
    # every argument it ran with, defaults included, pictures by size and pixel hash
    assert call["args"]["feather"] == 2 and call["args"]["scale"] == 1.0
    assert call["args"]["edge"] == "feather" and call["args"]["shadow"] is False
    assert call["args"]["image"]["image"] == list(subject_image.size)
    assert call["args"]["subject_mask"]["array"] == list(subject_mask.shape)
    assert call["returned"]["sha256"] == recording.describe(inside)["sha256"]


def test_only_the_outermost_call_is_recorded_and_a_failure_too(active, tiny_sd):
    like = Image.new("RGB", (96, 64))
    pictures = sdsam_nb.generate_background(tiny_sd, "a room", like=like, size=64, steps=2)
    with pytest.raises(ValueError, match="steps"):
        sdsam_nb.generate(tiny_sd, "a chair", steps=0)
    first, failed = _calls(active)  # generate_background's own generate call is not another
    assert first["call"] == "generate_background" and len(first["returned"]) == 1
    assert first["returned"][0]["info"]["seed"] == 0 == pictures[0].info["seed"]
    assert "cache" in first  # what the disk cache gave, per call
    assert failed["call"] == "generate" and failed["args"]["steps"] == 0
    assert failed["error"].startswith("ValueError: ") and "returned" not in failed


def test_a_model_loader_records_the_model_it_loaded(active, tiny_sam):
    sdsam_nb.load_sam("tiny")
    (call,) = _calls(active)
    assert call["call"] == "load_sam" and call["returned"] == {"object": type(tiny_sam).__name__}
    assert active.record["models"]["sam"]["model_type"] == "tiny"


def test_the_setup_cell_run_again_goes_on_in_the_same_run(tmp_path, capsys):
    first = runs.start("01_generate_subject", {"output_root": str(tmp_path), "seed": 0}, echo=False)
    again = runs.start("01_generate_subject", {"output_root": str(tmp_path), "seed": 3})
    assert again.path == first.path and len(list(tmp_path.iterdir())) == 1
    assert "goes on" in capsys.readouterr().out
    assert [e["params"].get("seed") for e in again.record["executions"]] == [0, 3]
    again.finish()
    other = runs.start("01_generate_subject", {"output_root": str(tmp_path)}, echo=False)
    assert other.path != first.path  # finished: the next start is a new run
    recording.deactivate()


def test_compare_calls_names_what_differs():
    def record(*calls):
        return {
            "notebooks": {"01_generate_subject": {"execution": 0}},
            "executions": [{"calls": list(calls)}],
        }

    made = {"call": "generate", "args": {"seed": 0, "cache": True}, "returned": ["a"]}
    same = {"call": "generate", "args": {"seed": 0, "cache": False}, "returned": ["a"]}
    other_seed = {"call": "generate", "args": {"seed": 5, "cache": False}, "returned": ["b"]}
    assert compare_calls(record(made), record(same)) == ([], 1)  # cache: a replay's choice
    assert compare_calls(record(made), record(other_seed)) == (
        ["01_generate_subject call 1 generate: seed=0 (replay: 5)"],
        1,
    )
    assert compare_calls(record(made), record({**same, "returned": ["b"]}))[0] == [
        "01_generate_subject call 1 generate: same arguments, another result"
    ]
    assert compare_calls(record(made, made), record(same))[0] == [
        "01_generate_subject call 2 generate: not made by the replay"
    ]
    assert compare_calls(record(), record(made)) == ([], 0)  # the original recorded none
