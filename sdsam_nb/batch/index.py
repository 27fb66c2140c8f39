"""A batch's index: one row per item, ``<out>/index.csv`` (and ``index.parquet`` with pyarrow).

Columns (:data:`COLUMNS`): ``id``; ``status`` (``done``, ``failed``, or ``pending`` while the
batch has not reached the item); ``error`` (a failed item's one-line error); ``run_dir`` (its
run folder, relative to the index; empty when the item failed before one was made); ``files``
(the run's files, ``;``-separated); ``object_expansion`` (the mean over the inpainted
variations; empty for composites) and ``object_expansion_original`` (the segmentation's own
part of it, see :func:`sdsam_nb.score_results`); ``seconds`` (the item's wall time);
``skipped`` (``True``: done by an earlier pass of the batch, not redone); ``worker`` (the
``host:pid`` that ran it) and ``peak_memory_mb`` (that process's peak resident memory when the
item ended: its models included).

Both files are replaced atomically (a temporary file + rename), after every item.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ..runs import Run
from .folders import replace

COLUMNS = (
    "id",
    "status",
    "error",
    "run_dir",
    "files",
    "object_expansion",
    "object_expansion_original",
    "seconds",
    "skipped",
    "worker",
    "peak_memory_mb",
)
INDEX = "index.csv"
PARQUET = "index.parquet"


def pending(item_id: str) -> dict:
    return _row(id=item_id, status="pending")


def failed(item_id: str, error: str, run_dir: str = "", seconds: float | None = None, **worker):
    """A failed item's row; ``worker``: ``worker`` and ``peak_memory_mb`` when it ran."""
    return _row(
        id=item_id, status="failed", error=error, run_dir=run_dir, seconds=seconds, **worker
    )


def done(run: Run, item_id: str, *, skipped: bool) -> dict:
    """The row of a finished run: its files, scores and seconds from its ``run.json``."""
    record = run.record
    scores = record.get("inpaint_scores") or []
    expansion = [s["object_expansion"] for s in scores if "object_expansion" in s]
    original = [s["object_expansion_original"] for s in scores if "object_expansion_original" in s]
    return _row(
        id=item_id,
        status="done",
        run_dir=run.path.name,
        files=";".join(record.get("files", {}).values()),
        object_expansion=round(sum(expansion) / len(expansion), 4) if expansion else None,
        object_expansion_original=original[0] if original else None,
        seconds=record.get("batch", {}).get("seconds"),
        skipped=skipped,
        worker=record.get("batch", {}).get("worker"),
        peak_memory_mb=record.get("batch", {}).get("peak_memory_mb"),
    )


def _row(**values) -> dict:
    row = dict.fromkeys(COLUMNS)
    row.update(error="", run_dir="", files="", skipped=False)
    row.update(values)
    return row


def write(out_dir: Path, rows: list[dict]) -> Path:
    """Write ``index.csv`` (and ``index.parquet`` when pyarrow imports); returns the CSV."""
    target = out_dir / INDEX
    replace(target, lambda tmp: _csv(tmp, rows))
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return target
    table = pa.Table.from_pylist([{k: row[k] for k in COLUMNS} for row in rows], schema=_schema(pa))
    replace(out_dir / PARQUET, lambda tmp: pq.write_table(table, tmp))
    return target


def _schema(pa):
    types = dict.fromkeys(COLUMNS, pa.string())
    types.update(
        object_expansion=pa.float64(),
        object_expansion_original=pa.float64(),
        seconds=pa.float64(),
        skipped=pa.bool_(),
        peak_memory_mb=pa.float64(),
    )
    return pa.schema(list(types.items()))


def _csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row[k] is None else row[k] for k in COLUMNS})
        f.flush()
        os.fsync(f.fileno())
