"""The one runner of batches and sweeps: each job (a batch's item, a sweep's point) into its
own run folder ``<out>/<name>/``, here or on Ray (:mod:`.ray_pool`), resumable; the index
``<out>/index.csv`` (and ``index.parquet`` with pyarrow) has a row per job, rewritten
atomically after each.

The models load once per process (the notebooks' loaders keep them in
:data:`sdsam_nb.models.MODELS`). Resume (docs/batches.md): a job whose folder is done from the
same spec is skipped; another folder the runner made under its name is moved aside
(:mod:`.folders`) and the job runs again; anything else there stops the run before it writes.
A failing job is recorded in its ``run.json`` entry (:attr:`Jobs.key`) and its index row,
never raised: the others go on.

The index's columns (:data:`COLUMNS`): ``id``; ``status`` (``done``, ``failed``, ``pending``);
``error`` (one line); ``run_dir`` (relative; empty when no folder was made); ``files``
(``;``-separated); ``object_expansion`` (the mean over the inpainted variations) and
``object_expansion_original`` (see :func:`sdsam_nb.score_results`); ``seconds``; ``skipped``
(done by an earlier pass); ``worker`` (``host:pid``) and ``peak_memory_mb`` (that process's
peak, its models included); then a sweep's swept parameters (text as it is, else JSON).
"""

from __future__ import annotations

import csv
import io
import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout
from tqdm.auto import tqdm

from ..runs import Run, ensure_folder, new_run, open_run
from ..runs.record import replace_atomically, write_synced
from ..validate import one_line
from . import folders
from .ray_pool import import_ray, ray_rows

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


class Jobs:
    """The jobs of one batch or sweep (subclasses: the batch's items, the sweep's points).

    Attributes:
        key: ``"batch"`` or ``"sweep"``: the entry of ``run.json`` that holds a job's spec,
            seconds and worker, and the word the messages use.
        unit: what one job is called (``"item"``, ``"point"``).
        names: the jobs' names (their run folders' names), in order.
        specs: name -> what the job's run is made from (compared on resume).
        columns: the index's columns after :data:`COLUMNS` (a sweep's swept names).
    """

    key = "batch"
    unit = "item"
    columns: tuple[str, ...] = ()

    def __init__(self, names: list[str], specs: dict[str, dict]):
        self.names, self.specs = list(names), specs

    def prepare(self, name: str):
        """What :meth:`execute` needs, checked before a run folder is made."""
        return None

    def entry(self, name: str) -> dict:
        """The job's ``run.json`` entry besides its spec and worker."""
        return {}

    def execute(self, name: str, run: Run, prepared) -> None:
        """Run job ``name``'s notebooks into ``run``; raises the first error."""
        raise NotImplementedError

    def values(self, name: str) -> dict:
        """The job's cells of :attr:`columns`."""
        return {}

    def row(self, name: str, **values) -> dict:
        """The job's index row: :data:`COLUMNS` (empty) and its :meth:`values`, updated by
        ``values``."""
        out = {**dict.fromkeys(COLUMNS), "error": "", "run_dir": "", "files": "", "skipped": False}
        return {**out, "id": name, **self.values(name), **values}

    def done_row(self, run: Run, name: str, *, skipped: bool) -> dict:
        """The row of a finished run: its files, scores, seconds and worker."""
        record = run.record
        entry = record.get(self.key, {})
        scores = record.get("inpaint_scores") or []
        expansion = [s["object_expansion"] for s in scores if "object_expansion" in s]
        original = [
            s["object_expansion_original"] for s in scores if "object_expansion_original" in s
        ]
        return self.row(
            name,
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

    def run_one(self, name: str, out: Path, state: str | None = None) -> dict:
        """Run job ``name`` into ``out/<name>/``; its index row (a failure is recorded there,
        never raised).

        ``state``: the job's folder as the runner found it (:func:`folders.state`); ``None``
        (a Ray worker) looks again, so that a job retried after its worker died moves its own
        unfinished attempt aside, and one that had finished is not run again.
        """
        spec = self.specs[name]
        if state is None:
            state = folders.state(out / name, spec, key=self.key)
        if state == "done":
            return self.done_row(open_run(out / name), name, skipped=False)
        start = time.perf_counter()

        def failed(error: str) -> dict:
            return self.row(name, status="failed", error=error, seconds=since(start))

        if state == "foreign":  # appeared since the batch was planned: left alone
            return failed(f"ValueError: {folders.foreign(out, [name])}")
        try:
            prepared = self.prepare(name)
        except Exception as exc:  # a bad job: recorded, no run folder, the others go on
            return failed(one_line(exc))
        if state != "new":
            kind = "previous" if state == "changed" else "incomplete"
            moved = folders.move_aside(out / name, kind)
            why = "made with other settings" if state == "changed" else "unfinished or failed"
            tqdm.write(
                f"{name}: the earlier run was {why}; it is now {moved.name}", file=sys.stderr
            )
        try:  # with its marker: the batch owns the folder from its first moment
            run = new_run(out, run_id=folders.make(out, name).name, made=True)
        except (OSError, ValueError) as exc:  # something appeared there since: left alone
            return failed(one_line(exc))
        # the worker (host:pid) from the start: a running job says which process runs it
        run.set(self.key, {**self.entry(name), "spec": spec, "worker": worker()["worker"]})
        try:
            self.execute(name, run, prepared)
            # the seconds mark the job done: a kill between notebooks leaves it incomplete
            took, where = since(start), worker()
            run.update(lambda r: r[self.key].update(seconds=took, **where))
        except Exception as exc:  # recorded in run.json and the index; the others go on
            line, trace, where = one_line(exc), traceback.format_exc(), worker()
            took = since(start)
            entry = {"error": line, "traceback": trace, "seconds": took, **where}
            run.update(lambda r: r[self.key].update(entry))
            return self.row(name, status="failed", error=line, run_dir=name, seconds=took, **where)
        return self.done_row(run, name, skipped=False)


def worker() -> dict:
    """Which process ran the job (``host:pid``) and its peak memory so far (MB): a process's
    models stay loaded, so the peak is the worker's, not the job's own."""
    found = {"worker": f"{socket.gethostname()}:{os.getpid()}", "peak_memory_mb": None}
    try:
        import resource
    except ImportError:  # Windows: no peak memory
        return found
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB; bytes on macOS
    found["peak_memory_mb"] = round(peak / (2**20 if sys.platform == "darwin" else 2**10))
    return found


def since(start: float) -> float:
    """Seconds since ``start`` (a :func:`time.perf_counter` reading), to 0.01 s."""
    return round(time.perf_counter() - start, 2)


def write_index(out_dir: Path, rows: list[dict], columns: tuple[str, ...] = ()) -> Path:
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


def run_jobs(
    jobs: Jobs,
    out_dir: str | os.PathLike,
    *,
    progress: bool = True,
    ray: str | None = None,
    workers: int | None = None,
) -> Result:
    """Run ``jobs`` into ``out_dir/<name>/``, skipping those done; write ``out_dir/index.csv``.

    Args:
        jobs: a batch's items or a sweep's points.
        out_dir: the folder (created). Run again into it to resume.
        progress: a tqdm progress bar on stderr; without it a line per job done.
        ray: ``None`` runs the jobs here, one after the other; else on a Ray actor pool
            (:mod:`.ray_pool`, the ``ray`` extra): ``"local"`` (this machine), ``"auto"`` (the
            cluster running here) or a cluster's address.
        workers: with ``ray``, the pool's size (default: one per GPU, else 2).

    Raises:
        ValueError: one line, before anything is written: another batch or sweep writing
            into ``out_dir``, a name that names something there no batch made, Ray missing or
            a bad pool size.
    """
    out = Path(os.path.expanduser(out_dir)).resolve()
    taken = [n for n in jobs.names if os.path.lexists(out / n)]
    folders.refuse(out, [n for n in taken if not folders.owned(out / n, jobs.key)])
    if ray is not None:
        import_ray(ray, workers)
    out = ensure_folder(out, name="-o")
    lock = FileLock(str(out / ".batch.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ValueError(
            f"another batch or sweep is writing into {out}: wait for it, or use another -o"
        ) from None
    try:
        return _run(jobs, out, progress, ray, workers)
    finally:
        lock.release()


def _run(jobs: Jobs, out: Path, progress: bool, ray: str | None, workers: int | None) -> Result:
    states = {n: folders.state(out / n, jobs.specs[n], key=jobs.key) for n in jobs.names}
    folders.refuse(out, [name for name, found in states.items() if found == "foreign"])
    rows = {}
    for name in jobs.names:
        if states[name] == "done":
            rows[name] = jobs.done_row(open_run(out / name), name, skipped=True)
        else:
            rows[name] = jobs.row(name, status="pending")
    path = write_index(out, list(rows.values()), jobs.columns)
    todo = [name for name in jobs.names if states[name] != "done"]
    before = len(jobs.names) - len(todo)
    counts = {"done": 0, "failed": 0}
    if ray is not None:
        finished = ray_rows(jobs, todo, out, address=ray, workers=workers)
    else:
        finished = (jobs.run_one(name, out, states[name]) for name in todo)
    bar = tqdm(
        total=len(todo),
        desc=f"{jobs.key} ({before} done before)" if before else jobs.key,
        unit=jobs.unit,
        disable=not progress,
        file=sys.stderr,
        bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| {elapsed}<{remaining}{postfix}",
    )
    start = time.perf_counter()
    try:
        for row in finished:
            name = row["id"]
            rows[name] = row
            path = write_index(out, list(rows.values()), jobs.columns)
            counts[row["status"]] += 1
            if row["status"] == "failed":
                tqdm.write(f"{name}: failed: {row['error']}", file=sys.stderr)
            elif not progress:
                print(f"{name}: done in {row['seconds']:.1f} s", flush=True)
            minutes = (time.perf_counter() - start) / 60
            rate = (counts["done"] + counts["failed"]) / minutes if minutes > 0 else 0.0
            bar.set_postfix_str(
                f"done {counts['done']}, failed {counts['failed']}, {rate:.1f} {jobs.unit}s/min",
                refresh=False,
            )
            bar.update(1)
    finally:
        bar.close()
    return Result(out, list(rows.values()), path)
