"""sdsam-nb batch: many items into run folders on the tiny models; a bad item fails alone, a
killed batch resumes without redoing or losing anything, a run replays bit for bit, and an
item's pictures do not depend on its position."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from sdsam_nb import models, runs
from sdsam_nb.__main__ import main
from sdsam_nb.batch import plan_item, read_manifest, run_batch
from sdsam_nb.batch.runner import COLUMNS
from sdsam_nb.runs.chain import replay

QUICK = {
    "sd_model": "tiny",
    "sam_model": "tiny",
    "detector_model": "tiny",
    "steps": 2,
    "size": 128,
    "n_variations": 1,
    "edge": "feather",
}
AUTO = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
ITEMS = [
    {"id": "points", "image": "small.png", "points": [[64, 48, 1]], "seed": 3},
    {"id": "box", "image": "small.png", "box": [30, 20, 100, 80], "method": "composite"},
    {
        "id": "text",
        "image": "small.png",
        "text_prompt": "the armchair",
        "box_threshold": 0.0,
        "text_threshold": 0.0,
    },
    {"id": "auto", "image": "small.png", "mask": "auto", "auto_mask": AUTO},
    {"id": "file", "image": "sample_subject.png", "mask": "sample_mask.png", "seed": 7},
    {"id": "missing", "image": "nope.png", "points": [[10, 10, 1]]},
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """The manifest's folder: a 128x96 copy of the sample picture, the sample and its mask."""
    folder = tmp_path_factory.mktemp("batch")
    with Image.open(runs.sample_subject()) as sample:
        sample.save(folder / "sample_subject.png")
        sample.convert("RGB").resize((128, 96), Image.BILINEAR).save(folder / "small.png")
    with Image.open(runs.sample_mask()) as mask:
        mask.save(folder / "sample_mask.png")
    (folder / "items.yaml").write_text(yaml.safe_dump(ITEMS), encoding="utf-8")
    (folder / "quick.yaml").write_text(yaml.safe_dump(QUICK), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def batch(folder):
    """The six items through the command, in this process: ``(exit status, out folder)``."""
    out = folder / "out"
    code = main(
        ["batch", str(folder / "items.yaml"), "-o", str(out), "-f", str(folder / "quick.yaml"),
         "--no-progress"]
    )  # fmt: skip
    return code, out


def _index(out: Path) -> dict[str, dict]:
    with open(out / "index.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == COLUMNS
    return {row["id"]: row for row in rows}


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def test_five_items_done_one_failed_with_its_error(batch):
    code, out = batch
    assert code == 1  # some failed
    rows = _index(out)
    assert list(rows) == [item["id"] for item in ITEMS]  # the manifest's order
    assert {i for i, r in rows.items() if r["status"] == "done"} == set(rows) - {"missing"}
    missing = rows["missing"]
    assert missing["status"] == "failed" and missing["run_dir"] == ""
    assert missing["error"].startswith("FileNotFoundError: image: no image file at")
    assert missing["error"].endswith("nope.png'")
    assert not (out / "missing").exists()  # nothing was made for it
    for rid in set(rows) - {"missing"}:
        row, run = rows[rid], runs.open_run(out / rid)
        assert row["run_dir"] == rid and run.status == "done" and float(row["seconds"]) > 0
        files = run.record["files"]
        assert row["files"].split(";") == list(files.values())
        assert all((out / rid / name).is_file() for name in files.values())
        # inpainted items carry their object expansion, the composite none
        assert (row["object_expansion"] == "") == (rid == "box")
    # the notebooks each item ran, and its mask from what the item gave
    record = {rid: runs.open_run(out / rid).record for rid in set(rows) - {"missing"}}
    assert list(record["points"]["notebooks"]) == ["02_click_to_mask", "03_inpaint_background"]
    assert list(record["box"]["notebooks"]) == ["02_click_to_mask", "04_composite_background"]
    assert record["text"]["clicks"]["actions"][0]["op"] == "text"
    assert record["auto"]["auto_mask"]["found"] and list(record["auto"]["notebooks"]) == [
        "03_inpaint_background"
    ]
    with Image.open(runs.sample_mask()) as m:
        given = np.asarray(m.convert("L")) > 127
    assert np.array_equal(_pixels(out / "file" / "mask.png") > 127, given)
    # where each mask came from, as the step that used it recorded it
    source = {rid: record[rid]["mask_source"]["source"] for rid in record}
    assert source == {
        "points": "clicks",
        "box": "clicks",
        "text": "text",
        "auto": "automatic",
        "file": "file",
    }
    given_file = out.parent / "sample_mask.png"  # the manifest's folder
    made = record["file"]["mask_source"]
    assert made["path"] == str(given_file) and made["sha256"] == models.sha256_file(given_file)
    if importlib.util.find_spec("pyarrow"):
        import pyarrow.parquet as pq

        table = pq.read_table(out / "index.parquet").to_pylist()
        assert [r["id"] for r in table] == list(rows) and table[-1]["status"] == "failed"
    p = record["points"]["notebooks"]["03_inpaint_background"]["params"]
    assert p["seed"] == 3 and p["steps"] == 2 and p["image_path"].endswith("small.png")
    assert record["file"]["notebooks"]["03_inpaint_background"]["params"]["seed"] == 7


def test_a_done_item_replays_bit_identical(batch, tmp_path):
    """The notebooks replayed from a batch item's run.json (their cells in this process, as
    the batch ran them; test_notebooks replays a chain in a kernel) give its pictures."""
    _, out = batch
    new, comparison = replay(out / "points", output_root=tmp_path, progress=False, here=True)
    assert comparison.identical
    assert {"input", "mask", "mask-overlay", "inpaint-0"} <= set(new.record["files"])


def test_items_in_another_order_give_the_same_pictures(batch, folder, tmp_path):
    _, out = batch
    # "text" (no seed of its own) first, then "points" (seed 3), the reverse of the batch's
    manifest = read_manifest([ITEMS[2], ITEMS[0]], base=folder)
    again = run_batch(manifest, out_dir=tmp_path / "again", params=QUICK, progress=False)
    assert again.done == ["text", "points"] and again.exit_code == 0
    for rid in ("text", "points"):
        for key, name in runs.open_run(out / rid).record["files"].items():
            same = np.array_equal(_pixels(out / rid / name), _pixels(again.out_dir / rid / name))
            assert same, (rid, key)
    # an item changed since its run was done: run again, the old run kept aside
    changed = read_manifest([ITEMS[2], {**ITEMS[0], "seed": 4}], base=folder)
    third = run_batch(changed, out_dir=tmp_path / "again", params=QUICK, progress=False)
    assert third.skipped == ["text"] and third.done == ["text", "points"]
    (previous,) = (tmp_path / "again").glob("points.previous-*")
    assert runs.open_run(previous).record["batch"]["spec"]["item"]["seed"] == 3
    assert runs.open_run(third.out_dir / "points").record["batch"]["spec"]["item"]["seed"] == 4


def test_a_killed_batch_resumes_without_redoing_or_losing(folder, tmp_path):
    items = [
        {"id": "gen", "subject_prompt": "a red chair", "seed": 5, "points": [[64, 64, 1]],
         "width": 128, "height": 128},
        *({"id": f"p{i}", "image": str(folder / "small.png"), "points": [[60 + i, 48, 1]]}
          for i in range(3)),
    ]  # fmt: skip
    manifest = tmp_path / "items.jsonl"
    manifest.write_text("".join(json.dumps(item) + "\n" for item in items))
    out = tmp_path / "out"
    command = ["batch", str(manifest), "-o", str(out), "-f", str(folder / "quick.yaml")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sdsam_nb", *command, "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    try:
        deadline = time.monotonic() + 300
        while not _done(out / "gen"):
            assert proc.poll() is None and time.monotonic() < deadline, "gen never finished"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "gen").iterdir()}

    assert main([*command, "--no-progress"]) == 0

    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "gen").iterdir()}
    assert after == before  # not redone: the same files, bytes and times
    rows = _index(out)
    assert [r["status"] for r in rows.values()] == ["done"] * 4
    assert rows["gen"]["skipped"] == "True"
    assert "False" in [r["skipped"] for r in rows.values()]  # the rest was done now
    ids = {item["id"] for item in items}
    for entry in out.iterdir():  # each item once; an interrupted one moved aside, kept
        if entry.is_dir() and entry.name not in ids:
            rid, _, stamp = entry.name.partition(".incomplete-")
            assert rid in ids and stamp, entry.name
    for rid in ids:
        record = runs.open_run(out / rid).record
        names = [e["notebook"] for e in record["executions"]]
        assert len(names) == len(set(names)) and all(
            e["status"] == "done" for e in record["executions"]
        )
        assert not any(name.endswith("-1.png") for name in os.listdir(out / rid)), rid
    # a third pass has nothing left to do
    assert main([*command, "--no-progress"]) == 0
    assert all(r["skipped"] == "True" for r in _index(out).values())


def _done(folder: Path) -> bool:
    """What resume takes for done: every execution done, and the batch's seconds recorded
    after the item's last notebook (a kill between the two leaves it to be redone)."""
    try:
        run = runs.open_run(folder)
        return run.status == "done" and "seconds" in run.record.get("batch", {})
    except (FileNotFoundError, ValueError):  # not yet, or run.json being replaced
        return False


# ---------------------------------------------------------------------- Ray


@pytest.mark.slow
def test_the_manifest_on_ray_gives_the_local_pictures(batch, folder, ray_local, tmp_path):
    _, local = batch
    code = main(
        ["batch", str(folder / "items.yaml"), "-o", str(tmp_path / "ray"), "-f",
         str(folder / "quick.yaml"), "--ray", "--workers", "2", "--no-progress"]
    )  # fmt: skip
    assert code == 1  # the missing picture, as locally
    rows, local_rows = _index(tmp_path / "ray"), _index(local)
    assert {r: rows[r]["status"] for r in rows} == {r: local_rows[r]["status"] for r in rows}
    assert rows["missing"]["error"] == local_rows["missing"]["error"]
    assert len({rows[r]["worker"] for r in rows if rows[r]["status"] == "done"}) == 2
    assert all(int(rows[r]["peak_memory_mb"]) > 0 for r in rows if rows[r]["status"] == "done")
    for rid in (r for r in rows if rows[r]["status"] == "done"):
        files = runs.open_run(local / rid).record["files"]
        assert runs.open_run(tmp_path / "ray" / rid).record["files"] == files
        for name in files.values():
            there = tmp_path / "ray" / rid / name
            assert np.array_equal(_pixels(local / rid / name), _pixels(there)), (rid, name)


@pytest.mark.slow
@pytest.mark.long
def test_a_ray_worker_that_dies_has_its_item_redone(folder, ray_local, tmp_path):
    items = [{"id": f"p{i}", "image": str(folder / "small.png"), "points": [[60 + 3 * i, 48, 1]]}
             for i in range(3)]  # fmt: skip
    manifest = read_manifest(items, base=folder)
    out = tmp_path / "out"
    killed = []

    def kill_a_worker_mid_item() -> None:  # the workers running an item, once one is
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            for pid in _item_workers(out, items):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_a_worker_mid_item, daemon=True)
    watcher.start()
    result = run_batch(manifest, out_dir=out, params=QUICK, progress=False, ray="local", workers=2)
    watcher.join(timeout=1)
    assert killed, "no worker was killed"
    assert os.getpid() not in killed
    assert result.done == [item["id"] for item in items] and result.exit_code == 0
    aside = [p.name for p in out.iterdir() if ".incomplete-" in p.name]
    assert aside, "the interrupted item's folder was not kept aside"
    alone = run_batch(manifest, out_dir=tmp_path / "alone", params=QUICK, progress=False)
    for item in items:  # redone, not patched: the same pictures as an undisturbed batch
        for name in runs.open_run(out / item["id"]).record["files"].values():
            here, there = out / item["id"] / name, alone.out_dir / item["id"] / name
            assert np.array_equal(_pixels(here), _pixels(there)), (item["id"], name)


def _item_workers(out: Path, items: list[dict]) -> list[int]:
    """The pids of this batch's Ray workers that are running an item now, as each worker
    recorded itself (``host:pid``) in its item's ``run.json``: never another process."""
    pids = []
    for item in items:
        try:
            run = runs.open_run(out / item["id"])
            status, worker = run.status, run.record["batch"]["worker"]
        except (FileNotFoundError, ValueError, KeyError):  # not yet, or being replaced
            continue
        host, _, pid = worker.rpartition(":")
        if status == "running" and host == socket.gethostname():
            pids.append(int(pid))
    return pids


def test_ray_without_ray_installed_says_how_to_install_it(folder, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails, as when not installed
    code = main(["batch", str(folder / "items.yaml"), "--ray", "-o", str(folder / "no-ray")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("sdsam-nb: batch: --ray needs Ray Data")
    assert 'pip install "sdsam-nb[ray]"' in err[-1]
    assert main(["batch", str(folder / "items.yaml"), "--workers", "2"]) == 2
    assert "--workers needs --ray" in capsys.readouterr().err


# ---------------------------------------------------------------------- manifests, no models


def test_an_items_values_never_reach_the_next_item(folder):
    first = plan_item({"id": "a", "image": "small.png", "seed": 9, "steps": 3}, {}, folder)
    second = plan_item({"id": "b", "image": "small.png"}, {}, folder)
    assert first.notebooks["03_inpaint_background"]["seed"] == 9
    assert second.notebooks["03_inpaint_background"]["seed"] == 0  # the notebook's default
    assert second.notebooks["03_inpaint_background"]["steps"] != 3


def test_csv_jsonl_and_folder_manifests(tmp_path):
    (tmp_path / "items.csv").write_text(
        "id,image,points,seed,background_prompt,reframe_aspect,box\n"
        'a,x.png,"[[1, 2, 1]]",4,"a beach: sunny, wide",16:9,\n'
        ',y.png,,,,,"[0, 0, 5, 5]"\n'
    )
    a, b = read_manifest(tmp_path / "items.csv").items
    assert a == {
        "id": "a",
        "image": "x.png",
        "points": [[1, 2, 1]],
        "seed": 4,
        "background_prompt": "a beach: sunny, wide",
        "reframe_aspect": "16:9",
    }
    assert b == {"id": "2", "image": "y.png", "box": [0, 0, 5, 5]}
    (tmp_path / "items.jsonl").write_text('{"image": "x.png"}\n\n{"id": 7, "image": "y.png"}\n')
    assert [i["id"] for i in read_manifest(tmp_path / "items.jsonl").items] == ["1", "7"]
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    for name in ("chair.png", "lamp.jpg", "notes.txt"):
        (pictures / name).touch()
    with pytest.raises(FileNotFoundError, match="prompt.txt"):
        read_manifest(pictures)
    (pictures / "prompt.txt").write_text("a sunlit room\n")
    manifest = read_manifest(pictures)
    assert manifest.items == [
        {"id": "chair", "image": "chair.png", "background_prompt": "a sunlit room"},
        {"id": "lamp", "image": "lamp.jpg", "background_prompt": "a sunlit room"},
    ]
    assert manifest.base == pictures.resolve()
    (tmp_path / "twice.yaml").write_text("- {id: a}\n- {id: a}\n")
    with pytest.raises(ValueError, match="items 1 and 2 have the same id 'a'"):
        read_manifest(tmp_path / "twice.yaml")
    with pytest.raises(ValueError, match="cannot name a folder"):
        read_manifest([{"id": "../up"}])


def test_an_item_fails_in_one_line_naming_what_is_wrong(tmp_path):
    Image.new("RGB", (64, 48)).save(tmp_path / "x.png")

    def error(item, defaults=None):
        with pytest.raises((ValueError, FileNotFoundError)) as caught:
            plan_item({"id": "a", **item}, defaults or {}, tmp_path)
        return str(caught.value)

    assert error({"image": "x.png", "seeed": 1}) == "unknown parameter 'seeed' (did you mean seed?)"
    assert error({"image": "x.png", "steps": "ten"}).startswith("parameter steps must be")
    assert "not both" in error({"image": "x.png", "subject_prompt": "a cat"})
    assert "not both" in error({"image": "x.png", "mask": "auto", "points": [[1, 1]]})
    assert "image_path is not for a batch item" in error({"image_path": "x.png"})
    assert error({"image": "x.png", "mask": "m.png"}).startswith("mask: no mask file at")
    assert "needs an image or a subject_prompt" in error({"seed": 1})
    # the item's own prompts win over the defaults'; none at all: the automatic mask
    plan = plan_item({"id": "a", "image": "x.png", "box": [1, 1, 9, 9]}, {"points": [[5, 5]]},
                     tmp_path)  # fmt: skip
    assert plan.notebooks["02_click_to_mask"]["points"] == []
    assert plan.notebooks["02_click_to_mask"]["box"] == [1, 1, 9, 9]
    plan = plan_item({"id": "a", "image": "x.png"}, {}, tmp_path)
    assert plan.mask == "auto" and list(plan.notebooks) == ["03_inpaint_background"]


def test_bad_defaults_and_manifests_stop_the_command_in_one_line(tmp_path, capsys):
    (tmp_path / "items.yaml").write_text("- {image: x.png}\n")
    assert main(["batch", str(tmp_path / "items.yaml"), "-p", "stepz", "2"]) == 2
    said = capsys.readouterr().err.strip().splitlines()
    assert said == ["sdsam-nb: batch: unknown parameter 'stepz' (did you mean steps?)"]
    assert main(["batch", str(tmp_path / "nope.yaml")]) == 2
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and said[0].startswith("sdsam-nb: batch: manifest: no file")


# ---------------------------------------------------------------------- hostile, ordinary input


def _tree(root: Path) -> dict[str, bytes | str | None]:
    """Everything under ``root``: a file's bytes, a link's target, ``None`` for a folder."""
    tree = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if path.is_symlink():
            tree[name] = os.readlink(path)
        else:
            tree[name] = path.read_bytes() if path.is_file() else None
    return tree


def test_an_id_naming_what_no_batch_made_stops_the_batch_and_nothing_moves(
    folder, tmp_path, capsys
):
    project = tmp_path / "project"  # sdsam-nb batch items.yaml -o . in a project folder
    (project / "photos").mkdir(parents=True)
    (project / "photos" / "cat.png").write_bytes((folder / "small.png").read_bytes())
    (project / "notes").write_text("mine\n")
    (project / "link").symlink_to(project / "photos")
    runs.new_run(project, run_id="mine")  # a notebook's run folder: no marker, no batch entry
    ids = ["photos", "fresh", "notes", "link", "mine"]
    manifest = tmp_path / "items.yaml"
    manifest.write_text(yaml.safe_dump([{"id": rid, "image": "small.png"} for rid in ids]))
    before = _tree(project)
    assert main(["batch", str(manifest), "-o", str(project), "--no-progress"]) == 2
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1
    assert said[0].startswith(
        f"sdsam-nb: batch: {project} already holds 'photos', 'notes', 'link', 'mine', which "
        "no batch or sweep made: choose another -o, or move them away"
    )
    assert _tree(project) == before  # nothing moved, renamed or written (no index, no lock)
    with pytest.raises(ValueError, match="already holds 'photos', 'notes', 'link', 'mine',"):
        run_batch(read_manifest(str(manifest)), out_dir=project, progress=False)
    assert _tree(project) == before
    # what a batch made is its own: a folder with the marker, or from before the marker one
    # whose run.json has a batch entry; each is moved aside when unfinished
    from sdsam_nb.batch import runner

    marked = runs.new_run(tmp_path / "out", run_id="marked")
    (marked.path / runner.MARKER).touch()
    legacy = runs.new_run(tmp_path / "out", run_id="legacy")
    legacy.set("batch", {"id": "legacy"})
    state = runner.folder_state
    assert state(marked.path, {}) == state(legacy.path, {}) == "incomplete"
    assert state(project / "photos", {}) == state(project / "link", {}) == "foreign"


def test_a_replaced_picture_or_mask_is_redone_on_resume(folder, tmp_path):
    with Image.open(folder / "small.png") as small:
        small.save(tmp_path / "pic.png")
        small.save(tmp_path / "still.png")
        flipped = small.transpose(Image.FLIP_LEFT_RIGHT)
    mask = np.zeros((96, 128), np.uint8)
    mask[24:72, 32:96] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    items = [
        {"id": "pic", "image": "pic.png", "points": [[64, 48, 1]]},
        {"id": "masked", "image": "still.png", "mask": "m.png"},
    ]
    manifest = read_manifest(items, base=tmp_path)
    out = tmp_path / "out"

    def batch():
        return run_batch(manifest, out_dir=out, params=QUICK, progress=False)

    assert batch().done == ["pic", "masked"]
    old = _pixels(out / "pic" / "input.png")
    flipped.save(tmp_path / "pic.png")  # another photo at the same path
    again = batch()
    assert again.skipped == ["masked"] and again.done == ["pic", "masked"]
    (previous,) = out.glob("pic.previous-*")  # the old run kept aside, whole
    assert np.array_equal(_pixels(previous / "input.png"), old)
    assert np.array_equal(_pixels(out / "pic" / "input.png"), np.asarray(flipped))
    hashes = [runs.open_run(p).record["batch"]["spec"]["sha256"] for p in (previous, out / "pic")]
    assert hashes[0]["image"] != hashes[1]["image"] and len(hashes[1]["image"]) == 64
    mask[24:72, 16:80] = 255  # another mask at the same path
    Image.fromarray(mask).save(tmp_path / "m.png")
    third = batch()
    assert third.skipped == ["pic"] and third.done == ["pic", "masked"]
    assert len(list(out.glob("masked.previous-*"))) == 1
    assert np.array_equal(_pixels(out / "masked" / "mask.png") > 127, mask > 127)
    assert batch().skipped == ["pic", "masked"]  # nothing changed: nothing redone


def test_an_empty_manifest_is_refused_in_one_line(tmp_path, capsys):
    files = {
        "empty.csv": "",
        "header.csv": "id,image,seed\n",
        "empty.yaml": "",
        "list.yaml": "[]\n",
        "comments.yml": "# nothing yet\n",
        "empty.jsonl": "\n  \n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=rf"^manifest {name} has no items: \S"):
            read_manifest(tmp_path / name)
    with pytest.raises(ValueError, match="^manifest has no items"):
        read_manifest([])
    assert main(["batch", str(tmp_path / "header.csv"), "-o", str(tmp_path / "out")]) == 2
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and said[0].startswith("sdsam-nb: batch: manifest header.csv has no")
    assert not (tmp_path / "out").exists()


def test_csv_cells_read_as_yaml_1_2_and_bad_csv_in_one_line(tmp_path):
    (tmp_path / "items.csv").write_text(
        "id,image,seed,reframe_aspect,text_prompt,points\n"
        'a,x.png,010,16:9,yes,"[[1, 2, 1]]"\n'
        "b,x.png,1:00,,,\n"
    )
    a, b = read_manifest(tmp_path / "items.csv").items
    assert a["seed"] == 10 and a["reframe_aspect"] == "16:9" and a["text_prompt"] == "yes"
    assert a["points"] == [[1, 2, 1]]
    assert b["seed"] == "1:00"  # text (YAML 1.1 read 60): the item's check refuses it
    # a cell over csv's limit, often an unclosed quote
    (tmp_path / "long.csv").write_text(f'id,background_prompt\na,ok\nb,"{"x" * 140_000}"\n')
    with pytest.raises(ValueError) as caught:
        read_manifest(tmp_path / "long.csv")
    assert str(caught.value).startswith(
        "manifest long.csv line 3: a cell is longer than 131,072 characters: shorten it, or "
    )
    (tmp_path / "latin1.csv").write_bytes("id,background_prompt\na,café\n".encode("latin-1"))
    utf8 = r"^manifest latin1.csv is not UTF-8 text \(at byte 26\): save it as UTF-8$"
    with pytest.raises(ValueError, match=utf8):
        read_manifest(tmp_path / "latin1.csv")
    (tmp_path / "latin1.yaml").write_bytes("- background_prompt: café\n".encode("latin-1"))
    with pytest.raises(ValueError, match="^manifest latin1.yaml is not UTF-8 text"):
        read_manifest(tmp_path / "latin1.yaml")


def test_deep_nesting_and_alias_bombs_are_refused_in_one_line(tmp_path):
    deep = "[" * 5000 + "]" * 5000
    (tmp_path / "deep.jsonl").write_text('{"id": "a"}\n{"points": ' + deep + "}\n")
    with pytest.raises(ValueError, match="^manifest deep.jsonl line 2 is nested too deeply"):
        read_manifest(tmp_path / "deep.jsonl")
    (tmp_path / "deep40.jsonl").write_text('{"points": ' + "[" * 40 + "]" * 40 + "}\n")
    with pytest.raises(ValueError, match="^manifest deep40.jsonl line 1 is nested too deeply"):
        read_manifest(tmp_path / "deep40.jsonl")
    (tmp_path / "deep.yaml").write_text("- points: " + deep + "\n")
    with pytest.raises(ValueError, match="^manifest deep.yaml is nested too deeply"):
        read_manifest(tmp_path / "deep.yaml")
    # 1 KB that stands for a billion values once its aliases are followed
    levels = ["  l0: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    levels += [f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 9)]
    (tmp_path / "bomb.yaml").write_text("- id: a\n" + "\n".join(levels) + "\n  points: *l8\n")
    start = time.perf_counter()
    with pytest.raises(ValueError, match="^manifest bomb.yaml holds more than 1,000,000 values"):
        read_manifest(tmp_path / "bomb.yaml")
    assert time.perf_counter() - start < 10


def test_a_manifest_too_large_is_refused_before_it_is_read(tmp_path):
    from sdsam_nb.batch.manifest import MAX_BYTES, MAX_ITEMS

    assert (MAX_BYTES, MAX_ITEMS) == (64 << 20, 100_000)
    with open(tmp_path / "huge.csv", "wb") as f:
        f.truncate(MAX_BYTES + 1)  # sparse: nothing on disk, nothing read
    with pytest.raises(ValueError, match="^manifest huge.csv is larger than 64 MiB: split it"):
        read_manifest(tmp_path / "huge.csv")
    (tmp_path / "many.jsonl").write_text("{}\n" * (MAX_ITEMS + 1))
    with pytest.raises(ValueError, match="^manifest many.jsonl has more than 100,000 items: spl"):
        read_manifest(tmp_path / "many.jsonl")
    with pytest.raises(ValueError, match="^manifest has more than 100,000 items"):
        read_manifest([{}] * (MAX_ITEMS + 1))


def test_a_picture_of_too_many_pixels_fails_fast_alone(folder, tmp_path):
    Image.new("1", (9000, 9000)).save(tmp_path / "huge.png")  # 81 megapixels in 10 KB
    assert (tmp_path / "huge.png").stat().st_size < 100_000
    items = [{"id": "huge", "image": "huge.png", "points": [[10, 10, 1]]}]
    start = time.perf_counter()
    result = run_batch(
        read_manifest(items, base=tmp_path), out_dir=tmp_path / "out", params=QUICK,
        progress=False,
    )  # fmt: skip
    assert time.perf_counter() - start < 5
    assert result.failed == ["huge"]
    (row,) = result.rows
    assert "pixels" in row["error"], row["error"]
