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
from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass
class Result:
    """What a batch or a sweep did.

    Attributes:
        out_dir: its folder.
        rows: one dict per item (point), in the manifest's (grid's) order: the index's rows.
        index: the path of ``index.csv``.
        key: the column that names a row: ``"id"`` (a batch's items), ``"point"`` (a sweep's).
    """

    out_dir: Path
    rows: list[dict]
    index: Path
    key: str = "id"

    @property
    def done(self) -> list[str]:
        """The rows done (in this pass or an earlier one)."""
        return [r[self.key] for r in self.rows if r["status"] == "done"]

    @property
    def failed(self) -> list[str]:
        return [r[self.key] for r in self.rows if r["status"] == "failed"]

    @property
    def skipped(self) -> list[str]:
        """The rows an earlier pass had done."""
        return [r[self.key] for r in self.rows if r["skipped"]]

    @property
    def exit_code(self) -> int:
        """The command's exit status: 0 every row done, 1 some failed."""
        return 1 if self.failed else 0


def write_csv(target: Path, columns: Sequence[str], rows: list[dict]) -> Path:
    """``target`` (an index) written atomically: a header of ``columns``, then a line per row
    (``None`` as an empty cell). Returns ``target``."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            for row in rows:
                writer.writerow(["" if row.get(c) is None else row[c] for c in columns])
            f.flush()
            os.fsync(f.fileno())

    replace(target, write)
    return target


def write(out_dir: Path, rows: list[dict]) -> Path:
    """Write ``index.csv`` (and ``index.parquet`` when pyarrow imports); returns the CSV."""
    target = write_csv(out_dir / INDEX, COLUMNS, rows)
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
