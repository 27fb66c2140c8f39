"""How every built-in tiny model is written: once, deterministically, published atomically.

:func:`build_folder` fills a temporary folder beside the final one with torch's RNG seeded
with :data:`SEED`, then moves it into place (another process building the same model at the
same time may win the race: its folder is kept). :func:`save_model_and_processor` is the
``write`` of a transformers ``(processor, model)`` pair.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch

from ..cache import loading_bars

SEED = 0


def publish(tmp: Path, final: Path) -> Path:
    """Move a finished build into place; if another process won the race, keep theirs."""
    try:
        os.replace(tmp, final) if tmp.is_file() else tmp.rename(final)
    except OSError:
        if not final.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
    return final


def build_folder(final: Path, marker: str, write) -> Path:
    """``final``, written once: unless ``final / marker`` exists, ``write(tmp)`` fills a
    temporary folder beside it (torch's RNG seeded with :data:`SEED` and restored after)
    and the folder is moved into place (:func:`publish`: another process may win the race)."""
    final = Path(final)
    if (final / marker).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        write(tmp)
    return publish(tmp, final)


def save_model_and_processor(build):
    """A ``write(folder)`` for :func:`build_folder` that saves ``build()``'s
    ``(processor, model)`` as ``save_pretrained`` does for a real checkpoint (no progress
    bars)."""

    def write(folder: Path) -> None:
        processor, model = build()
        with loading_bars(False):
            model.save_pretrained(folder, safe_serialization=True)
            processor.save_pretrained(folder)

    return write
