"""Where the kit's own files are, where run folders go, and a notebook step's subject and mask.

The notebooks and sample pictures ship in the package (``sdsam_nb/notebooks``,
``sdsam_nb/data``); in a checkout (an editable install) they are its ``notebooks/`` and
``data/``.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from ..models import sha256_file
from .record import Run

_CHECKOUT = Path(__file__).resolve().parents[2]  # the repository, for an editable install
MASK_SOURCES = ("clicks", "text", "file", "automatic", "sample")


def kit_dir(name: str) -> Path:
    """The kit's ``"notebooks"`` or ``"data"`` folder, wherever the kit is installed."""
    if name not in ("notebooks", "data"):
        raise ValueError(f"name must be 'notebooks' or 'data', got {name!r}")
    installed = resources.files("sdsam_nb") / name
    if installed.is_dir():  # a wheel or a regular install
        return Path(str(installed))
    if (_CHECKOUT / name).is_dir() and _is_checkout(_CHECKOUT):  # editable install
        return _CHECKOUT / name
    raise FileNotFoundError(
        f"sdsam-nb's {name}/ folder is missing from its install ({_CHECKOUT}): reinstall the "
        "kit (pip install sdsam-nb, or pip install -e . in a checkout)"
    )


def _is_checkout(folder: Path) -> bool:
    """Whether ``folder`` is a checkout of sdsam-nb (its own pyproject.toml and package)."""
    project = folder / "pyproject.toml"
    if not (project.is_file() and (folder / "sdsam_nb" / "__init__.py").is_file()):
        return False
    return 'name = "sdsam-nb"' in project.read_text(encoding="utf-8", errors="replace")


def default_output_root() -> Path:
    """Where a new run folder goes when nothing says otherwise: ``$SDSAM_OUTPUTS``; else the
    ``outputs/`` of the sdsam-nb checkout holding the current directory, or of the checkout
    the kit is imported from; else ``./outputs`` (beside the notebooks, where Jupyter runs
    them)."""
    if os.environ.get("SDSAM_OUTPUTS"):
        return Path(os.environ["SDSAM_OUTPUTS"]).expanduser().resolve()
    cwd = Path.cwd().resolve()
    for folder in (cwd, *cwd.parents):
        if _is_checkout(folder):
            return folder / "outputs"
    if _is_checkout(_CHECKOUT):
        return _CHECKOUT / "outputs"
    return cwd / "outputs"


def sample_subject() -> Path:
    """The sample picture (512x384 PNG) notebooks 02-04 use when run alone."""
    return kit_dir("data") / "sample_subject.png"


def sample_mask() -> Path:
    """The sample picture's exact subject mask (white = subject)."""
    return kit_dir("data") / "sample_mask.png"


def load_subject(run: Run, image_path: str | None = None) -> Image.Image:
    """The subject picture for a notebook step, as ``RGB``, in this order:

    1. ``image_path`` (:func:`sdsam_nb.to_rgb`), copied into the run as ``input`` so that a
       replay does not depend on the original file (once per unchanged file);
    2. the run's ``subject`` (made by ``01_generate_subject``);
    3. the sample picture :func:`sample_subject` (so each notebook also runs alone).
    """
    from ..images import to_rgb

    if image_path:
        image = to_rgb(image_path, name="image_path")
        given = {"path": str(image_path), "sha256": sha256_file(image_path)}
        if run.record.get("input") != given or run.file("input") is None:
            run.save_image("input", image)
            run.set("input", given)
        return image
    if run.file("subject") is not None:
        return run.load_image("subject")
    return to_rgb(sample_subject(), name="sample subject")


def load_subject_mask(run: Run, image: Image.Image, mask_path: str | None = None) -> np.ndarray:
    """The subject mask (``HxW bool``) for ``image``, in this order:

    1. ``mask_path`` (a mask file, white = subject);
    2. the run's ``mask`` (made by ``02_click_to_mask``, or kept by a batch);
    3. the sample mask, only when ``image`` has the sample picture's very pixels.

    Where it came from is recorded as ``mask_source`` (:func:`record_mask_source`).

    Raises:
        FileNotFoundError: none of the three applies (the message says what to do).
        ValueError: the mask file is not a picture, or its size is not ``image``'s.
    """
    from ..images import to_mask, to_rgb

    own = run.file("mask")
    if mask_path and not (own is not None and Path(mask_path).resolve() == own.resolve()):
        mask = to_mask(_open_mask(mask_path), image.size, name="mask_path")
        record_mask_source(run, "file", path=str(mask_path), sha256=sha256_file(mask_path))
        return mask
    if own is not None:  # made by 02 (or kept by a batch); mask_path may name it
        mask = to_mask(run.load_mask("mask"), image.size, name="run mask")
        made = run.record.get("mask_made_by") or {"source": "clicks"}  # older runs: 02's
        record_mask_source(run, **{**made, "mask": own.name})
        return mask
    sample = to_rgb(sample_subject(), name="sample subject")
    if image.size == sample.size and np.array_equal(np.asarray(image), np.asarray(sample)):
        mask = to_mask(_open_mask(sample_mask()), image.size, name="sample mask")
        record_mask_source(run, "sample")
        return mask
    raise FileNotFoundError(
        f"run {run.id} has no mask for this picture: run 02_click_to_mask first (clicks, "
        "points or text_prompt), or set mask_path"
    )


def keep_mask(run: Run, mask: np.ndarray, segmenter, overlay: Image.Image | None = None) -> None:
    """Keep a clicked mask in ``run``: ``mask.png``, the ``overlay`` picture (if given) as
    ``mask-overlay.png``, the segmenter's click history as ``clicks``
    (:meth:`~sdsam_nb.segment.clicks.ClickSegmenter.to_dict`, enough to replay it) and how
    the mask was made (``mask_made_by``: ``text`` with the text prompt that placed the box,
    else ``clicks``)."""
    clicks = segmenter.to_dict()
    run.save_mask("mask", mask)
    if overlay is not None:
        run.save_image("mask-overlay", overlay)
    run.set("clicks", clicks)
    texts = [a["text"] for a in clicks["actions"] if a.get("op") == "text"]
    if texts:
        record_mask_made(run, "text", text_prompt=texts[-1])
    else:
        record_mask_made(run, "clicks")


def record_mask_source(run: Run, source: str, **details) -> None:
    """Record where the mask a step uses came from, as ``mask_source``: ``source`` is one of
    :data:`MASK_SOURCES` (``clicks``: points, a box or clicks; ``text``: a text prompt;
    ``file``: ``mask_path`` or a batch item's ``mask``; ``automatic``: SAM's automatic masks;
    ``sample``: the sample picture's own mask); ``details`` add e.g. the file and its sha256."""
    run.set("mask_source", _source(source, details))


def record_mask_made(run: Run, source: str, **details) -> None:
    """Record how the run's own ``mask`` file was made, as ``mask_made_by`` (the steps that
    read it record that as their ``mask_source``); arguments as :func:`record_mask_source`."""
    run.set("mask_made_by", _source(source, details))


def _source(source: str, details: dict) -> dict:
    if source not in MASK_SOURCES:
        raise ValueError(f"source must be one of {', '.join(MASK_SOURCES)}, got {source!r}")
    return {"source": source, **details}


def _open_mask(path, name: str = "mask_path") -> Image.Image:
    """The mask file at ``path`` as an ``L`` image (its alpha ignored), or a one-line error."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{name}: no mask file at {str(path)!r}")
    try:
        with Image.open(path) as m:
            return m.convert("L")
    except OSError as exc:
        raise ValueError(f"{name}: {str(path)!r} is not a picture PIL can read ({exc})") from None


def drive_root(output_root: str = "sdsam-nb/outputs") -> str:
    """On Colab, mount Google Drive and return a run root on it (``MyDrive/<output_root>``)."""
    from ..models import in_colab

    if not in_colab():
        raise ValueError("use_drive=True needs Google Colab; elsewhere set output_root instead")
    from google.colab import drive  # type: ignore[import-not-found]

    drive.mount("/content/drive")
    return str(Path("/content/drive/MyDrive") / output_root.lstrip("./"))
