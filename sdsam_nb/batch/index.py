"""The index of a batch or sweep: one row per item (point), ``<out>/index.csv`` (and
``index.parquet`` with pyarrow).

Columns (:data:`COLUMNS`): ``id`` (the item's id, the point's name ``p001``...);
``status`` (``done``, ``failed``, or ``pending`` while the batch has not reached the item);
``error`` (a failed item's one-line error); ``run_dir`` (its run folder, relative to the
index; empty when the item failed before one was made); ``files`` (the run's files,
``;``-separated); ``object_expansion`` (the mean over the inpainted variations; empty for
composites) and ``object_expansion_original`` (the segmentation's own part of it, see
:func:`sdsam_nb.score_results`); ``seconds`` (the item's wall time); ``skipped`` (``True``:
done by an earlier pass, not redone); ``worker`` (the ``host:pid`` that ran it) and
``peak_memory_mb`` (that process's peak resident memory when the item ended: its models
included); then a sweep's swept parameters, a column each (text as it is, other values as
JSON).

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


def done(run: Run, name: str, *, key: str = "batch", skipped: bool) -> dict:
    """The row of a finished run: its files, scores, and the seconds and worker its
    ``run.json`` entry ``key`` (``"batch"``, ``"sweep"``) recorded."""
    record = run.record
    entry = record.get(key, {})
    scores = record.get("inpaint_scores") or []
    expansion = [s["object_expansion"] for s in scores if "object_expansion" in s]
    original = [s["object_expansion_original"] for s in scores if "object_expansion_original" in s]
    return row(
        id=name,
        status="done",
        run_dir=run.path.name,
        files=";".join(record.get("files", {}).values()),
        object_expansion=round(sum(expansion) / len(expansion), 4) if expansion else None,
        object_expansion_original=original[0] if original else None,
        seconds=entry.get("seconds"),
        skipped=skipped,
        worker=entry.get("worker"),
        peak_memory_mb=entry.get("peak_memory_mb"),
    )


def row(**values) -> dict:
    """A row: :data:`COLUMNS` (empty) updated by ``values``."""
    out = dict.fromkeys(COLUMNS)
    out.update(error="", run_dir="", files="", skipped=False)
    out.update(values)
    return out


@dataclass
class Result:
    """What a batch or a sweep did.

    Attributes:
        out_dir: its folder.
        rows: one dict per item (point), in the manifest's (grid's) order: the index's rows.
        index: the path of ``index.csv``.
    """

    out_dir: Path
    rows: list[dict]
    index: Path

    @property
    def done(self) -> list[str]:
        """The rows done (in this pass or an earlier one)."""
        return [r["id"] for r in self.rows if r["status"] == "done"]

    @property
    def failed(self) -> list[str]:
        return [r["id"] for r in self.rows if r["status"] == "failed"]

    @property
    def skipped(self) -> list[str]:
        """The rows an earlier pass had done."""
        return [r["id"] for r in self.rows if r["skipped"]]

    @property
    def exit_code(self) -> int:
        """The command's exit status: 0 every row done, 1 some failed."""
        return 1 if self.failed else 0


def write(out_dir: Path, rows: list[dict], columns: Sequence[str] = ()) -> Path:
    """Write ``index.csv`` (and ``index.parquet`` when pyarrow imports) atomically:
    :data:`COLUMNS` and then ``columns``, a line per row (``None`` an empty cell); returns
    the CSV's path."""
    names = [*COLUMNS, *columns]

    def write_csv(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(names)
            for r in rows:
                writer.writerow(["" if r.get(c) is None else r[c] for c in names])
            f.flush()
            os.fsync(f.fileno())

    target = out_dir / INDEX
    replace(target, write_csv)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return target
    schema = _schema(pa, columns)
    table = pa.Table.from_pylist([{k: r.get(k) for k in names} for r in rows], schema=schema)
    replace(out_dir / PARQUET, lambda tmp: pq.write_table(table, tmp))
    return target


def _schema(pa, columns: Sequence[str]):
    types = dict.fromkeys([*COLUMNS, *columns], pa.string())
    types.update(
        object_expansion=pa.float64(),
        object_expansion_original=pa.float64(),
        seconds=pa.float64(),
        skipped=pa.bool_(),
        peak_memory_mb=pa.float64(),
    )
    return pa.schema(list(types.items()))
