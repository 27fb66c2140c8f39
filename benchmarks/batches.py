"""Batches: the batch runner against one papermill notebook run per item, and on Ray.

:data:`ITEMS` items (one with ``--quick``, which leaves Ray out) whose background notebook 03
inpaints on the built-in tiny models (:data:`SETTINGS`), three ways, each from a cold start with
the disk caches off (``SDSAM_CACHE_GB=0``): ``papermill`` per item, ``sdsam-nb batch`` and
``sdsam-nb batch --ray --workers 2`` (skipped without Ray Data). What the ratios mean: README.md.
"""

from __future__ import annotations

import csv
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from .harness import Context, Section, command, judged, offline_env

NAME = "batches"
TITLE = "Batches: the batch runner vs papermill per item, locally and on Ray (tiny models)"
ITEMS, QUICK_ITEMS = 20, 1
SETTINGS = {"sd_model": "tiny", "sam_model": "tiny", "steps": 2, "size": 128}
SETTINGS.update(n_variations=1, edge="feather")
TARGET_BATCH = 3  # the batch runner vs papermill per item, items per minute
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
        items.append({"id": f"item{i:02d}", "image": f"item{i:02d}.png"})
        items[-1].update(mask=f"mask{i:02d}.png", seed=i)
    return items


def _batch(folder: Path, items: str, out: Path, *extra: str) -> tuple[float, list[dict]]:
    """``sdsam-nb batch`` of ``folder / items`` into ``out`` in a new process: its seconds and
    the rows of its ``index.csv``."""
    args = [sys.executable, "-m", "sdsam_nb", "batch", str(folder / items), "-o", str(out)]
    args += ["-f", str(folder / "settings.yaml"), "--no-progress", *extra]
    env = offline_env(SDSAM_CACHE_GB="0")
    seconds, _ = command(args, f"batch {' '.join(extra)}", timeout=TIMEOUT, env=env)
    with open(out / "index.csv", newline="") as f:
        return seconds, list(csv.DictReader(f))


def _papermill(folder: Path, out: Path, items: list[dict]) -> float:
    """One papermill run of notebook 03 per item, each in a new kernel: its seconds."""
    import papermill as pm

    from sdsam_nb.runs import kit_dir

    source = kit_dir("notebooks") / "03_inpaint_background.ipynb"
    out.mkdir()
    start = time.perf_counter()
    for item in items:
        params = {**SETTINGS, "image_path": str(folder / item["image"]), "seed": item["seed"]}
        params.update(mask_path=str(folder / item["mask"]), output_root=str(out), progress=False)
        notebook = str(out / f"{item['id']}.ipynb")
        kw = {"kernel_name": "python3", "progress_bar": False, "cwd": str(folder)}
        pm.execute_notebook(str(source), notebook, parameters=params, **kw)
    return time.perf_counter() - start


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
    sec = Section(NAME, TITLE)
    if ctx.cuda:
        return sec.skip("a CPU benchmark of the batch machinery (tiny models)")
    n = QUICK_ITEMS if ctx.quick else ITEMS
    with tempfile.TemporaryDirectory(prefix="sdsam-bench-batches-") as tmp:
        folder = Path(tmp)
        items = _items(folder, n)
        (folder / "items.yaml").write_text(yaml.safe_dump(items), encoding="utf-8")
        (folder / "settings.yaml").write_text(yaml.safe_dump(SETTINGS), encoding="utf-8")
        if not ctx.quick:  # the tiny models built (numba compiled) before anything is timed
            ctx.log(f"batches: warm-up (1 item), then {n} items three ways")
            (folder / "warm.yaml").write_text(yaml.safe_dump(items[:1]), encoding="utf-8")
            _batch(folder, "warm.yaml", folder / "warm")

        naive = _papermill(folder, folder / "papermill", items)
        ctx.log(f"batches: papermill per item {naive:.1f} s")
        local, rows = _batch(folder, "items.yaml", folder / "local")
        ctx.log(f"batches: batch {local:.1f} s")
        per_min = {"papermill": n / naive * 60, "batch": n / local * 60}
        sec.add("papermill per item: items per minute", per_min["papermill"], "items/min")
        sec.add("batch: items per minute", per_min["batch"], "items/min")
        ratio = per_min["batch"] / per_min["papermill"]
        what = "batch vs papermill per item (items per minute)"
        sec.add(what, ratio, "x", **judged(ratio, "≥", TARGET_BATCH, ctx))
        (peak,) = _peaks(rows).values()
        sec.add("batch: the worker's peak memory", peak, "MB")

        if ctx.quick:
            sec.notes.append("Ray: not started in a quick run")
        elif importlib.util.find_spec("ray") is None:
            sec.notes.append('Ray: not installed (pip install "sdsam-nb[ray]"), not measured')
        else:
            ray = ("--ray", "--workers", "2")
            on_ray, ray_rows = _batch(folder, "items.yaml", folder / "ray", *ray)
            ctx.log(f"batches: batch --ray (2 workers) {on_ray:.1f} s")
            per_min["ray"] = n / on_ray * 60
            sec.add("batch --ray, 2 CPU workers: items per minute", per_min["ray"], "items/min")
            ray_ratio = per_min["ray"] / per_min["batch"]
            sec.add("batch --ray vs batch (items per minute)", ray_ratio, "x")
            peaks = _peaks(ray_rows)
            note = f"{len(peaks)} workers: " + ", ".join(f"{v:.0f}" for v in peaks.values())
            what = "batch --ray: peak memory per worker (the larger)"
            sec.add(what, max(peaks.values()), "MB", note=note)
            same = _same_pictures(folder / "local", folder / "ray", rows)
            sec.add("batch --ray: pictures bit-identical to the batch's", same, "bool")
            sec.extra["ray_peaks_mb"] = peaks
        sec.extra["items_per_minute"] = per_min
    sec.notes.append(
        f"{n} items, each a 128x96 picture with its mask file, notebook 03 on the tiny "
        "models (2 steps, 1 variation); timed from the command's start (process, kernel, Ray "
        "start and model loading included) to its last item; disk caches off; 2 cores"
    )
    return sec
