"""The one runner of batches and sweeps (docs/batches.md): each job (a batch's item, a sweep's
point) into its own run folder ``<out>/<name>/``, here or on Ray (:mod:`.ray_pool`), with the
index ``<out>/index.csv`` (and ``index.parquet`` with pyarrow) rewritten atomically after each.

Resume: a job whose folder is done from the same spec is skipped; another folder a batch or
sweep made (it holds :data:`MARKER`, or from before the marker a ``run.json`` with the jobs'
entry) is moved aside, never deleted, and the job runs again; anything else under a job's name
(a file, a link, the user's folder) stops the run before it writes. A failing job is recorded
in its ``run.json`` entry and its index row, never raised: the others go on.
"""

from __future__ import annotations

import csv
import io
import os
import secrets
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from filelock import FileLock, Timeout
from tqdm.auto import tqdm

from ..runs import Run, ensure_folder, new_run, open_run
from ..runs.record import replace_atomically, write_synced
from ..validate import one_line
from .ray_pool import import_ray, ray_rows

# The index's columns, then a sweep's swept parameters (text as it is, else JSON). status:
# done, failed or pending; run_dir: relative, empty when no folder was made; files:
# ;-separated; object_expansion: the mean over the inpainted variations (see
# sdsam_nb.score_results); skipped: done by an earlier pass; worker: host:pid, and its peak
# memory (its models included).
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
MARKER = ".sdsam-batch"  # in each run folder a batch or sweep makes: the folders it may move


@dataclass
class Result:
    """What a batch or sweep did: its folder, the index's rows (in the manifest's or grid's
    order) and the path of ``index.csv``. ``done`` and ``skipped`` include the rows an
    earlier pass did; ``exit_code`` is 0 when every row is done, else 1."""

    out_dir: Path
    rows: list[dict]
    index: Path

    @property
    def done(self) -> list[str]:
        return [r["id"] for r in self.rows if r["status"] == "done"]

    @property
    def failed(self) -> list[str]:
        return [r["id"] for r in self.rows if r["status"] == "failed"]

    @property
    def skipped(self) -> list[str]:
        return [r["id"] for r in self.rows if r["skipped"]]

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def owned(folder: Path, key: str = "batch") -> bool:
    """Whether ``folder`` is a folder (not a link) that a batch or sweep made."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    if (folder / MARKER).is_file():
        return True
    try:
        record = open_run(folder).record
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and key in record


def folder_state(folder: Path, spec: dict, key: str = "batch") -> str:
    """``"new"`` (nothing there), ``"foreign"`` (not :func:`owned`), ``"done"`` (every
    execution done, and ``run.json``'s ``key`` entry has ``seconds``, no ``error`` and
    ``spec``), ``"changed"`` (done from another spec) or ``"incomplete"``."""
    if not os.path.lexists(folder):
        return "new"
    if not owned(folder, key):
        return "foreign"
    try:
        run = open_run(folder)
        entry = run.record[key]
        # the seconds are recorded after the last notebook: a kill between notebooks is not done
        if run.status != "done" or "seconds" not in entry or "error" in entry:
            return "incomplete"
        same = entry["spec"] == spec
    except (OSError, ValueError, LookupError, TypeError, AttributeError):
        return "incomplete"  # no run.json yet, unreadable, or no spec in it
    return "done" if same else "changed"


def _foreign(out: Path, names: list[str]) -> ValueError:
    listed = ", ".join(repr(name) for name in names[:5])
    listed += f" and {len(names) - 5} more" if len(names) > 5 else ""
    return ValueError(
        f"{out} already holds {listed}, which no batch or sweep made: choose another -o, or "
        "move them away (a batch or sweep never moves or writes into what is not its own)"
    )


def _make(out: Path, name: str) -> Path:
    """``out/name`` holding :data:`MARKER`, made atomically (under a hidden name, marked,
    renamed): a batch killed at any moment leaves nothing or a folder it owns."""
    tmp = out / f".{name}.new-{secrets.token_hex(4)}"
    tmp.mkdir()
    (tmp / MARKER).write_text(
        "a run folder of sdsam-nb batch or sweep: resuming it may move this folder aside\n",
        encoding="utf-8",
    )
    target = out / name
    if os.path.lexists(target):  # appeared since the batch began (a rename would replace it)
        (tmp / MARKER).unlink()
        tmp.rmdir()
        raise _foreign(out, [name])
    os.rename(tmp, target)
    return target


def _move_aside(folder: Path, kind: str) -> Path:
    """Rename ``folder`` to the free name ``<name>.<kind>-<time>[-n]``; returns it."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    target, n = folder.with_name(f"{folder.name}.{kind}-{stamp}"), 1
    while os.path.lexists(target):
        n += 1
        target = folder.with_name(f"{folder.name}.{kind}-{stamp}-{n}")
    os.rename(folder, target)
    return target


def worker() -> dict:
    """``{"worker": "host:pid", "peak_memory_mb": the process's peak so far}`` (``None`` on
    Windows): a process keeps its models loaded, so the peak is the worker's, not a job's."""
    found = {"worker": f"{socket.gethostname()}:{os.getpid()}", "peak_memory_mb": None}
    try:
        import resource
    except ImportError:  # Windows
        return found
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB; bytes on macOS
    found["peak_memory_mb"] = round(peak / (2**20 if sys.platform == "darwin" else 2**10))
    return found


def since(start: float) -> float:
    """Seconds since ``start`` (a :func:`time.perf_counter` reading), to 0.01 s."""
    return round(time.perf_counter() - start, 2)


class Jobs:
    """The jobs of one batch or sweep; subclasses (the batch's items, the sweep's points) say
    what a job is made from and how it runs.

    Attributes:
        key: ``"batch"`` or ``"sweep"``: the ``run.json`` entry holding a job's spec, seconds
            and worker.
        unit: what one job is called (``"item"``, ``"point"``).
        names: the jobs' names (their run folders' names), in order.
        specs: name -> what the job's run is made from (compared on resume).
        columns: the index's columns after :data:`COLUMNS`.
    """

    key, unit = "batch", "item"
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
        """The job's index row (empty cells), updated by ``values``."""
        out = {**dict.fromkeys(COLUMNS), "error": "", "run_dir": "", "files": "", "skipped": False}
        return {**out, "id": name, **self.values(name), **values}

    def done_row(self, run: Run, name: str, *, skipped: bool) -> dict:
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
        """Run job ``name`` into ``out/<name>/``; returns its index row (a failure is recorded
        there, never raised).

        ``state``: :func:`folder_state` as the runner found it; ``None`` (a Ray worker) looks
        again, so that a job retried after its worker died moves its own unfinished attempt
        aside, and one that had finished is not run again.
        """
        spec, start = self.specs[name], time.perf_counter()
        state = state or folder_state(out / name, spec, self.key)
        if state == "done":
            return self.done_row(open_run(out / name), name, skipped=False)
        try:
            if state == "foreign":  # appeared since the batch was planned: left alone
                raise _foreign(out, [name])
            prepared = self.prepare(name)  # a bad job fails without a run folder
        except Exception as exc:
            return self.row(name, status="failed", error=one_line(exc), seconds=since(start))
        if state != "new":
            kind = "previous" if state == "changed" else "incomplete"
            moved = _move_aside(out / name, kind)
            why = "made with other settings" if state == "changed" else "unfinished or failed"
            tqdm.write(
                f"{name}: the earlier run was {why}; it is now {moved.name}", file=sys.stderr
            )
        try:  # with its marker: the batch owns the folder from its first moment
            run = new_run(out, run_id=_make(out, name).name, made=True)
        except (OSError, ValueError) as exc:  # something appeared there since: left alone
            return self.row(name, status="failed", error=one_line(exc), seconds=since(start))
        # the worker from the start: a running job says which process runs it
        run.set(self.key, {**self.entry(name), "spec": spec, "worker": worker()["worker"]})
        try:
            self.execute(name, run, prepared)
        except Exception as exc:  # recorded in run.json and the index; the others go on
            line, where = one_line(exc), {"seconds": since(start), **worker()}
            failed = {"error": line, "traceback": traceback.format_exc(), **where}
            run.update(lambda r: r[self.key].update(failed))
            return self.row(name, status="failed", error=line, run_dir=name, **where)
        # the seconds mark the job done: a kill before them leaves it incomplete
        where = {"seconds": since(start), **worker()}
        run.update(lambda r: r[self.key].update(where))
        return self.done_row(run, name, skipped=False)


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
            (:func:`.ray_pool.ray_rows`, the ``ray`` extra): ``"local"`` (this machine),
            ``"auto"`` (the cluster running here) or a cluster's address.
        workers: with ``ray``, the pool's size (default: one per GPU, else 2).

    Raises:
        ValueError: one line, before anything is written: another batch or sweep writing
            into ``out_dir``, a name that names something there no batch made, Ray missing or
            a bad pool size.
    """
    out = Path(os.path.expanduser(out_dir)).resolve()
    taken = [n for n in jobs.names if os.path.lexists(out / n) and not owned(out / n, jobs.key)]
    if taken:
        raise _foreign(out, taken)
    if ray is not None:
        import_ray(ray, workers)
    out = ensure_folder(out, name="-o")
    try:
        lock = FileLock(str(out / ".batch.lock")).acquire(timeout=0)
    except Timeout:
        raise ValueError(
            f"another batch or sweep is writing into {out}: wait for it, or use another -o"
        ) from None
    with lock:
        states = {n: folder_state(out / n, jobs.specs[n], jobs.key) for n in jobs.names}
        taken = [name for name, found in states.items() if found == "foreign"]
        if taken:
            raise _foreign(out, taken)
        rows = {
            n: jobs.done_row(open_run(out / n), n, skipped=True)
            if states[n] == "done"
            else jobs.row(n, status="pending")
            for n in jobs.names
        }
        path = write_index(out, list(rows.values()), jobs.columns)
        todo = [n for n in jobs.names if states[n] != "done"]
        if ray is not None:
            finished = ray_rows(jobs, todo, out, address=ray, workers=workers)
        else:
            finished = (jobs.run_one(n, out, states[n]) for n in todo)
        before = len(jobs.names) - len(todo)
        counts = {"done": 0, "failed": 0}
        with tqdm(
            total=len(todo),
            desc=f"{jobs.key} ({before} done before)" if before else jobs.key,
            unit=jobs.unit,
            disable=not progress,
            file=sys.stderr,
        ) as bar:
            for row in finished:
                rows[row["id"]] = row
                path = write_index(out, list(rows.values()), jobs.columns)
                counts[row["status"]] += 1
                if row["status"] == "failed":
                    tqdm.write(f"{row['id']}: failed: {row['error']}", file=sys.stderr)
                elif not progress:
                    print(f"{row['id']}: done in {row['seconds']:.1f} s", flush=True)
                done, failed = counts["done"], counts["failed"]
                bar.set_postfix_str(f"done {done}, failed {failed}", refresh=False)
                bar.update(1)
    return Result(out, list(rows.values()), path)
