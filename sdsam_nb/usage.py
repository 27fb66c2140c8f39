"""Which cache lookups a block of code made, for ``run.json``.

Each lookup of the embedding or picture cache is noted as a use, ``{"what": "embedding" |
"picture", "key": hex | None, "hit": bool}`` plus ``"off"`` (why nothing was looked up:
``"cache=False"``, ``"SDSAM_CACHE_GB=0"``, ``"model identity unknown"``...) when it was not
cached. :func:`recorded` collects the uses made inside a ``with`` block, also from nested
calls, without any function having to hand them back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_ACTIVE: ContextVar[tuple[list, ...]] = ContextVar("sdsam_nb_cache_uses", default=())


def use(what: str, key: str | None, hit: bool, off: str | None = None, **extra) -> dict:
    """A use record; noted by every :func:`recorded` block around the call."""
    record = {"what": what, "key": key, "hit": bool(hit), **extra}
    if off is not None:
        record["off"] = off
    for uses in _ACTIVE.get():
        uses.append(record)
    return record


def summary(uses: list[dict]) -> dict:
    """``{"hits", "misses", "off", "entries"}``: counts of the lookups that found their entry,
    that did not (and computed and stored it), and of the values not cached at all."""
    off = sum("off" in u for u in uses)
    hits = sum(u["hit"] for u in uses)
    return {"hits": hits, "misses": len(uses) - hits - off, "off": off, "entries": list(uses)}


@contextmanager
def recorded(entry: dict | None = None) -> Iterator[list[dict]]:
    """Collect the cache uses made inside the block (a list, filled as they happen).

    With ``entry`` (the dict :meth:`sdsam_nb.runs.Run.step` yields), ``entry["cache"]`` is set
    to their :func:`summary` when the block ends, if any lookup was made, so that the step's
    record in ``run.json`` says what came from the cache::

        with run.step("generate_subject") as entry, caching.recorded(entry):
            variations = generate(pipe, prompt, n=4)
    """
    uses: list[dict] = []
    token = _ACTIVE.set((*_ACTIVE.get(), uses))
    try:
        yield uses
    finally:
        _ACTIVE.reset(token)
        if entry is not None and uses:
            entry["cache"] = summary(uses)
