"""The run folders a batch or sweep makes in its folder: which are its own, the state of each,
moving one aside, and the refusal for what is not its own.

Only folders holding :data:`MARKER` (or, from before the marker, a ``run.json`` with a
``batch`` or ``sweep`` entry) are ever moved aside, never deleted. Anything else under a job's
name (a file, a link, the user's own folder) is *foreign*: never moved or written into.
"""

from __future__ import annotations

import os
import secrets
from datetime import datetime
from pathlib import Path

from ..runs import RUN_JSON, open_run

MARKER = ".sdsam-batch"
MARKER_TEXT = "a run folder of sdsam-nb batch or sweep: resuming it may move this folder aside"


def make(out: Path, name: str) -> Path:
    """Make ``out/name`` holding :data:`MARKER`, atomically (made under a hidden name, marked,
    renamed): a batch killed at any moment leaves nothing or a folder it owns.

    Raises:
        ValueError: ``out/name`` exists (something appeared there since the batch began).
    """
    tmp = out / f".{name}.new-{secrets.token_hex(4)}"
    tmp.mkdir()
    (tmp / MARKER).write_text(f"{MARKER_TEXT}\n", encoding="utf-8")
    target = out / name
    if os.path.lexists(target):  # a rename would replace an empty folder
        (tmp / MARKER).unlink()
        tmp.rmdir()
        raise ValueError(foreign(out, [name]))
    os.rename(tmp, target)
    return target


def owned(folder: Path, key: str = "batch") -> bool:
    """Whether ``folder`` is a folder (not a link) a batch or sweep made: it holds
    :data:`MARKER` or a ``run.json`` with a ``key`` entry."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    if (folder / MARKER).is_file():
        return True
    try:
        record = open_run(folder).record
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and key in record


def state(folder: Path, spec: dict, key: str = "batch") -> str:
    """``"new"`` (nothing there), ``"foreign"`` (not :func:`owned`), ``"done"`` (every
    execution done and ``run.json``'s ``key`` entry has ``seconds``, no ``error``, and
    ``spec``), ``"changed"`` (done from another spec) or ``"incomplete"``."""
    if not os.path.lexists(folder):
        return "new"
    if not owned(folder, key):
        return "foreign"
    if not (folder / RUN_JSON).is_file():
        return "incomplete"
    try:
        run = open_run(folder)
        entry = run.record[key]
        # the seconds are recorded after the last notebook: a kill between notebooks is not done
        if run.status != "done" or "seconds" not in entry or "error" in entry:
            return "incomplete"
        same = entry["spec"] == spec
    except (OSError, ValueError, LookupError, TypeError, AttributeError):
        return "incomplete"  # run.json unreadable, or no spec in it
    return "done" if same else "changed"


def move_aside(folder: Path, kind: str) -> Path:
    """Rename ``folder`` to ``<name>.<kind>-<time>`` (a free name); returns the new path."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    target = folder.with_name(f"{folder.name}.{kind}-{stamp}")
    n = 1
    while os.path.lexists(target):
        n += 1
        target = folder.with_name(f"{folder.name}.{kind}-{stamp}-{n}")
    os.rename(folder, target)
    return target


def foreign(out: Path, names: list[str]) -> str:
    """The message for job names that name something in ``out`` no batch or sweep made."""
    listed = ", ".join(repr(name) for name in names[:5])
    listed += f" and {len(names) - 5} more" if len(names) > 5 else ""
    return (
        f"{out} already holds {listed}, which no batch or sweep made: choose another -o, or "
        "move them away (a batch or sweep never moves or writes into what is not its own)"
    )


def refuse(out: Path, names: list[str]) -> None:
    """Raise :func:`foreign`'s message as a ``ValueError`` when ``names`` is not empty."""
    if names:
        raise ValueError(foreign(out, names))
