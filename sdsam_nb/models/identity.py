"""What identifies a loaded model's weights, as ``run.json`` records it and the disk caches
key on it: the hub id and the commit of its cached snapshot, a folder's checksum, or a
checkpoint's sha256 (:func:`model_info`)."""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path
from typing import Any

from .cache import provenance, sha256_file, snapshot_commit

# what of the loaders' provenance run.json records
_RECORDED = (
    "backend",
    "family",
    "model",
    "revision",
    "scheduler",
    "model_type",
    "checkpoint",
    "checkpoint_path",
    "fast",  # load_sd's few-step adapter: its name, id, revision and commit (or sha256)
)


def model_info(obj, requested: str) -> dict:
    """What ``run.json`` records about a loaded model so that a replay can check it.

    * a hub id: the id and the commit of the cached snapshot that was loaded;
    * a local folder or ``"tiny"``: a sha256 over its file names and sizes plus the contents
      of its small files (configs, tokenizer, the tiny weights);
    * a SAM checkpoint: its file name and sha256 (official names carry the sha256 prefix);
    * ``dtype``: the dtype it computes in (``"bfloat16"``, ...), for a model that tells it: a
      diffusers pipeline's or transformers model's weights, a SAM predictor's image encoder
      (:func:`sdsam_nb.load_sam`'s ``dtype``).
    """
    info: dict[str, Any] = {"requested": requested}
    known = provenance(obj) or provenance(getattr(obj, "model", None))
    source = {k: v for k, v in known.items() if k in _RECORDED}
    info.update(source)
    dtype = getattr(obj, "dtype", None)
    torch = sys.modules.get("torch")  # a model with a torch dtype has imported torch
    if torch is not None and isinstance(dtype, torch.dtype):
        info["dtype"] = str(dtype).removeprefix("torch.")
    folder = known.get("path") or getattr(getattr(obj, "config", None), "_name_or_path", None)
    if folder and Path(folder).is_dir():
        info["checksum"] = folder_checksum(Path(folder))
        commit = snapshot_commit(Path(folder))
        if commit:
            info["commit"] = commit
    elif folder:
        info["commit"] = _hub_commit(folder, source.get("revision"))
    if "checkpoint_path" in source:
        path = Path(info.pop("checkpoint_path"))
        prefix = re.search(r"_([0-9a-f]{6,64})\.pth$", path.name)
        # official names carry their sha256 prefix, checked at load: no need to hash 2.5 GB again
        info["sha256"] = prefix.group(1) if prefix else sha256_file(path)
    return info


def folder_checksum(folder: Path, small: int = 16 << 20) -> str:
    """sha256 over (relative path, size) of every file, and the bytes of files < ``small``."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        size = path.stat().st_size
        digest.update(f"{rel}\0{size}\0".encode())
        if size < small:
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _hub_commit(repo_id: str, revision: str | None) -> str | None:
    """The commit of the cached snapshot of a diffusers pipeline (``model_index.json``) or a
    transformers model (``config.json``)."""
    for marker in ("model_index.json", "config.json"):
        try:
            from huggingface_hub import try_to_load_from_cache

            hit = try_to_load_from_cache(repo_id, marker, revision=revision)
        except Exception:  # an unusual cache layout only costs us the commit field
            return None
        if isinstance(hit, str):
            return snapshot_commit(Path(hit).parent)
    return None
