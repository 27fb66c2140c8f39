"""How every built-in tiny model is written: once, seeded, published atomically."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch

from ..cache import loading_bars

SEED = 0


def build_folder(final: Path, marker: str, write) -> Path:
    """``final``, written once: unless ``final / marker`` exists, ``write(tmp)`` fills a
    temporary folder beside it (torch's RNG seeded with :data:`SEED` and restored after),
    which is then moved into place (if another process won the race, its folder is kept)."""
    final = Path(final)
    if (final / marker).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        write(tmp)
    try:
        tmp.rename(final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not final.exists():
            raise
    return final


def saved(build):
    """A ``write(folder)`` for :func:`build_folder` that saves what ``build()`` returns, a
    diffusers pipeline or a transformers ``(processor, model)``, as ``save_pretrained`` does
    for a real checkpoint (no progress bars)."""

    def write(folder: Path) -> None:
        built = build()
        with loading_bars(False):
            if isinstance(built, tuple):
                processor, built = built
                processor.save_pretrained(folder)
            built.save_pretrained(folder, safe_serialization=True)

    return write
