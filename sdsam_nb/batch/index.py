"""The index of a batch or sweep, ``<out>/index.csv`` (and ``index.parquet`` with pyarrow): one
row per item (point), rewritten atomically after every one.

Columns (:data:`COLUMNS`): ``id``; ``status`` (``done``, ``failed``, ``pending``); ``error``
(one line); ``run_dir`` (relative; empty when no folder was made); ``files`` (``;``-separated);
``object_expansion`` (the mean over the inpainted variations) and
``object_expansion_original`` (see :func:`sdsam_nb.score_results`); ``seconds``; ``skipped``
(done by an earlier pass); ``worker`` (``host:pid``) and ``peak_memory_mb`` (that process's
peak, its models included); then a sweep's swept parameters (text as it is, else JSON).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..runs import Run
from ..runs.record import replace_atomically, write_synced

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
NUMBERS = ("object_expansion", "object_expansion_original", "seconds", "peak_memory_mb")


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
    """What a batch or a sweep did: its folder, the index's rows (in the manifest's or grid's
    order) and the path of ``index.csv``."""

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
    :data:`COLUMNS`, then ``columns``; ``None`` is an empty cell. Returns the CSV's path."""
    names = [*COLUMNS, *columns]
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(names)
    for r in rows:
        writer.writerow(["" if r.get(c) is None else r[c] for c in names])
    target = out_dir / "index.csv"
    replace_atomically(target, lambda tmp: write_synced(tmp, text.getvalue()))
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return target
    types = {name: pa.float64() if name in NUMBERS else pa.string() for name in names}
    schema = pa.schema(list({**types, "skipped": pa.bool_()}.items()))
    table = pa.Table.from_pylist([{k: r.get(k) for k in names} for r in rows], schema=schema)
    replace_atomically(out_dir / "index.parquet", lambda tmp: pq.write_table(table, tmp))
    return target
