"""What a batch's items and a sweep's points have in common: each is a *job*, a named run
folder made from a spec, run where this process is (the batch's process, or a Ray actor).

A :class:`Jobs` holds the jobs' names and specs and says how one is prepared and executed;
:meth:`Jobs.run_one` does the rest the same way for both: the folder's state (done, foreign,
changed, unfinished), moving an old folder aside, the new run folder with its marker and its
``run.json`` entry (``batch`` or ``sweep``: :attr:`Jobs.key`), the seconds, the worker, and a
failure recorded as the job's one-line error, never raised, so that the others go on.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import traceback
from pathlib import Path

from tqdm.auto import tqdm

from ..runs import Run, new_run, open_run
from ..runs.chain import one_line
from . import folders, index


class Jobs:
    """The jobs of one batch or sweep (subclasses: the batch's items, the sweep's points).

    Attributes:
        key: ``"batch"`` or ``"sweep"``: the entry of ``run.json`` that holds a job's spec,
            seconds and worker, and the word the messages use.
        unit: what one job is called (``"item"``, ``"point"``).
        names: the jobs' names (their run folders' names), in order.
        specs: name -> what the job's run is made from (compared on resume).
        columns: the index's columns after :data:`index.COLUMNS` (a sweep's swept names).
    """

    key = "batch"
    unit = "item"
    columns: tuple[str, ...] = ()

    def __init__(self, names: list[str], specs: dict[str, dict]):
        self.names, self.specs = list(names), specs

    def prepare(self, name: str):
        """What :meth:`execute` needs, checked before a run folder is made (a bad job fails
        here, without a folder)."""
        return None

    def entry(self, name: str) -> dict:
        """The job's ``run.json`` entry besides its spec and worker."""
        return {}

    def execute(self, name: str, run: Run, prepared, before_done) -> None:
        """Run job ``name`` into ``run`` (a new run folder); ``before_done()`` after its last
        notebook (resume requires the seconds it records)."""
        raise NotImplementedError

    def values(self, name: str) -> dict:
        """The job's cells of :attr:`columns`."""
        return {}

    def row(self, name: str, **values) -> dict:
        return index.row(id=name, **self.values(name), **values)

    def done_row(self, run: Run, name: str, *, skipped: bool) -> dict:
        return {**index.done(run, name, key=self.key, skipped=skipped), **self.values(name)}

    def run_one(self, name: str, out: Path, state: str | None = None) -> dict:
        """Run job ``name`` into ``out/<name>/``; its index row (failed with its error line,
        never raised).

        ``state``: the job's folder as the batch found it (:func:`folders.state`). ``None``
        looks at it here (a Ray worker): a retried job (its worker died) finds its own
        unfinished attempt and moves it aside, and a job that had finished before its worker
        died is not run again.
        """
        spec = self.specs[name]
        if state is None:
            state = folders.state(out / name, spec, key=self.key)
        if state == "done":
            return self.done_row(open_run(out / name), name, skipped=False)
        start = time.perf_counter()
        if state == "foreign":  # appeared since the batch was planned: left alone
            error = f"ValueError: {folders.foreign(out, [name])}"
            return self.row(name, status="failed", error=error, seconds=folders.since(start))
        try:
            prepared = self.prepare(name)
        except Exception as exc:  # a bad job: recorded, no run folder, the others go on
            return self.row(name, status="failed", error=one_line(exc),
                            seconds=folders.since(start))  # fmt: skip
        if state != "new":
            moved = folders.move_aside(
                out / name, "previous" if state == "changed" else "incomplete"
            )
            why = "made with other settings" if state == "changed" else "unfinished or failed"
            tqdm.write(f"{name}: the earlier run was {why}; it is now {moved.name}",
                       file=sys.stderr)  # fmt: skip
        try:  # with its marker: the batch owns the folder from its first moment
            run = new_run(out, run_id=folders.make(out, name).name, made=True)
        except (OSError, ValueError) as exc:  # something appeared there since: left alone
            return self.row(name, status="failed", error=one_line(exc),
                            seconds=folders.since(start))  # fmt: skip
        # the worker (host:pid) from the start: a running job says which process runs it
        run.set(self.key, {**self.entry(name), "spec": spec, "worker": worker()["worker"]})

        def seconds() -> None:  # recorded before the run reads done: nothing changes it after
            took = folders.since(start)
            run.update(lambda r: r[self.key].update(seconds=took, **worker()))

        try:
            self.execute(name, run, prepared, seconds)
        except Exception as exc:  # recorded in run.json and the index; the others go on
            line, trace, where = one_line(exc), traceback.format_exc(), worker()
            took = folders.since(start)
            run.update(lambda r: r[self.key].update(error=line, traceback=trace, seconds=took,
                                                    **where))  # fmt: skip
            return self.row(name, status="failed", error=line, run_dir=name, seconds=took,
                            **where)  # fmt: skip
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
