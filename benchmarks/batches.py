"""Batches: the batch runner against one papermill notebook run per item, and on Ray.

Twenty items (:data:`ITEMS`; one with ``--quick``, which leaves Ray out), each a 128x96 crop
of the sample picture and its mask (a different crop per item, so no two items share a
picture), a new background
inpainted by notebook 03 itself on the built-in tiny models (2 steps, 1 variation, scored
with the tiny SAM). Three ways, each from a cold start and timed from the command to its
last item:

* ``papermill per item`` (the naive way): ``papermill`` runs notebook 03 once per item, with
  the item's ``image_path``, ``mask_path`` and ``seed``: a kernel started and the models
  loaded for every item;
* ``batch``: ``sdsam-nb batch`` in a new process, the models loaded once;
* ``batch --ray``: ``sdsam-nb batch --ray --workers 2`` in a new process, which starts a Ray
  instance on this machine (loopback only) with two CPU actors, each loading the models once.
  Skipped when Ray Data is not installed.

Reported: items per minute of each, the batch's speed-up over papermill per item and Ray's
over the local batch (ratios within this one run), the peak resident memory of each worker
(the batch's ``peak_memory_mb`` column: the process's peak when its last item ended, models
included), and whether Ray's pictures are bit-identical to the local batch's. The disk caches
are off (``SDSAM_CACHE_GB=0``) in all three, so no way takes another's results. On the tiny
models an item's own work is a fraction of a second, so the ratios measure what a batch
saves (kernel start, imports, model loading) and what Ray costs (its start, scheduling):
with full-size models on GPUs, an item's own seconds dominate and the items per minute of a
Ray pool grow with its GPUs.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from .harness import Context, Section

NAME = "batches"
TITLE = "Batches: the batch runner vs papermill per item, locally and on Ray (tiny models)"
ITEMS, QUICK_ITEMS = 20, 1
SETTINGS = {
    "sd_model": "tiny",
    "sam_model": "tiny",
    "steps": 2,
    "size": 128,
    "n_variations": 1,
    "edge": "feather",
}
TARGET_BATCH = 3.0  # the batch runner vs papermill per item, items per minute
TIMEOUT = 1800


def _items(folder: Path, n: int) -> list[dict]:
    """``n`` crops of the sample picture and its mask, 128x96, each its own item."""
    from sdsam_nb import runs

    with Image.open(runs.sample_subject()) as s, Image.open(runs.sample_mask()) as m:
        subject, mask = s.convert("RGB"), m.convert("L")
    w, h = subject.size
    items = []
    for i in range(n):
        dx, dy = (i % 5) * w // 40, (i // 5) * h // 40
        box = (dx, dy, dx + w * 7 // 8, dy + h * 7 // 8)
        subject.crop(box).resize((128, 96), Image.BILINEAR).save(folder / f"item{i:02d}.png")
        mask.crop(box).resize((128, 96), Image.NEAREST).save(folder / f"mask{i:02d}.png")
        items.append(
            {"id": f"item{i:02d}", "image": f"item{i:02d}.png", "mask": f"mask{i:02d}.png",
             "seed": i}
        )  # fmt: skip
    return items


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "SDSAM_CACHE_GB": "0"}


def _batch(folder: Path, out: Path, extra: list[str]) -> float:
    command = [sys.executable, "-m", "sdsam_nb", "batch", str(folder / "items.yaml"), "-o",
               str(out), "-f", str(folder / "settings.yaml"), "--no-progress", *extra]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=TIMEOUT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{' '.join(command[3:5])} failed: {' | '.join(tail)}")
    return seconds


def _papermill(folder: Path, out: Path, items: list[dict]) -> float:
    """One papermill run of notebook 03 per item, each in a new kernel."""
    import papermill as pm

    from sdsam_nb.runs import kit_dir

    source = kit_dir("notebooks") / "03_inpaint_background.ipynb"
    out.mkdir()
    start = time.perf_counter()
    for item in items:
        params = {
            **SETTINGS,
            "image_path": str(folder / item["image"]),
            "mask_path": str(folder / item["mask"]),
            "seed": item["seed"],
            "output_root": str(out),
            "progress": False,
        }
        pm.execute_notebook(
            str(source),
            str(out / f"{item['id']}.ipynb"),
            parameters=params,
            kernel_name="python3",
            progress_bar=False,
            cwd=str(folder),
        )
    return time.perf_counter() - start


def _index(out: Path) -> list[dict]:
    with open(out / "index.csv", newline="") as f:
        return list(csv.DictReader(f))


def _peaks(rows: list[dict]) -> dict[str, float]:
    """Worker -> its peak resident memory (MB), over the items it ran."""
    peaks: dict[str, float] = {}
    for row in rows:
        if row["worker"] and row["peak_memory_mb"]:
            peaks[row["worker"]] = max(peaks.get(row["worker"], 0), float(row["peak_memory_mb"]))
    return peaks


def _same_pictures(a: Path, b: Path, rows: list[dict]) -> bool:
    for row in rows:
        for name in row["files"].split(";"):
            with Image.open(a / row["id"] / name) as x, Image.open(b / row["id"] / name) as y:
                if not np.array_equal(np.asarray(x), np.asarray(y)):
                    return False
    return True


def run(ctx: Context) -> Section:
    sec = ctx.section(NAME, TITLE)
    if ctx.cuda:
        sec.status, sec.reason = "skipped", "a CPU benchmark of the batch machinery (tiny models)"
        return sec
    n = QUICK_ITEMS if ctx.quick else ITEMS
    with tempfile.TemporaryDirectory(prefix="sdsam-bench-batches-") as tmp:
        folder = Path(tmp)
        items = _items(folder, n)
        (folder / "items.yaml").write_text(yaml.safe_dump(items), encoding="utf-8")
        (folder / "settings.yaml").write_text(yaml.safe_dump(SETTINGS), encoding="utf-8")
        if not ctx.quick:  # the tiny models built (numba compiled) before anything is timed
            ctx.log(f"batches: warm-up (1 item), then {n} items three ways")
            warm = folder / "warm.yaml"
            warm.write_text(yaml.safe_dump(items[:1]), encoding="utf-8")
            subprocess.run(
                [sys.executable, "-m", "sdsam_nb", "batch", str(warm), "-o",
                 str(folder / "warm"), "-f", str(folder / "settings.yaml"), "--no-progress"],
                env=_env(), capture_output=True, timeout=TIMEOUT, check=True,
            )  # fmt: skip

        naive = _papermill(folder, folder / "papermill", items)
        ctx.log(f"batches: papermill per item {naive:.1f} s")
        local = _batch(folder, folder / "local", [])
        ctx.log(f"batches: batch {local:.1f} s")
        rows = _index(folder / "local")
        per_min = {"papermill": n / naive * 60, "batch": n / local * 60}
        sec.add("papermill per item: items per minute", per_min["papermill"], "items/min")
        sec.add("batch: items per minute", per_min["batch"], "items/min")
        ratio = per_min["batch"] / per_min["papermill"]
        sec.add(
            "batch vs papermill per item (items per minute)",
            ratio,
            "x",
            target=f"≥ {TARGET_BATCH:g}",
            met=ratio >= TARGET_BATCH,
        )
        (peak,) = _peaks(rows).values()
        sec.add("batch: the worker's peak memory", peak, "MB")

        if ctx.quick:
            sec.notes.append("Ray: not started in a quick run")
        elif importlib.util.find_spec("ray") is None:
            sec.notes.append('Ray: not installed (pip install "sdsam-nb[ray]"), not measured')
        else:
            on_ray = _batch(folder, folder / "ray", ["--ray", "--workers", "2"])
            ctx.log(f"batches: batch --ray (2 workers) {on_ray:.1f} s")
            ray_rows = _index(folder / "ray")
            per_min["ray"] = n / on_ray * 60
            sec.add("batch --ray, 2 CPU workers: items per minute", per_min["ray"], "items/min")
            sec.add("batch --ray vs batch (items per minute)", per_min["ray"] / per_min["batch"],
                    "x")  # fmt: skip
            peaks = _peaks(ray_rows)
            sec.add(
                "batch --ray: peak memory per worker (the larger)",
                max(peaks.values()),
                "MB",
                note=f"{len(peaks)} workers: " + ", ".join(f"{v:.0f}" for v in peaks.values()),
            )
            same = _same_pictures(folder / "local", folder / "ray", rows)
            sec.add("batch --ray: pictures bit-identical to the batch's", float(same), "bool")
            sec.extra["ray_peaks_mb"] = peaks
        sec.extra["items_per_minute"] = per_min
    sec.notes.append(
        f"{n} items, each a 128x96 picture with its mask file, notebook 03 on the tiny "
        "models (2 steps, 1 variation); timed from the command's start (process, kernel, Ray "
        "start and model loading included) to its last item; disk caches off; 2 cores"
    )
    return sec
