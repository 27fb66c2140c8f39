"""Pictures in notebooks: grids of images with titles, and tables."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

PIXELS_PER_INCH = 192
"""A shown picture's pixels per inch of its width, at most: twice a screen's 96, for sharp
pictures on high-density screens."""


def show_images(
    images: Sequence[Image.Image | np.ndarray],
    titles: Sequence[str] | None = None,
    *,
    cols: int = 4,
    size: float = 3.5,
) -> None:
    """Show ``images`` in a grid of ``cols`` columns, each with its title above it.

    Each picture is a PNG in an HTML grid the notebook displays, ``size`` inches wide with its
    aspect ratio kept, at its own pixels up to :data:`PIXELS_PER_INCH` times ``size`` on its
    long side (a 512-px picture at the default size: nothing resampled); a larger one is
    scaled down for the notebook (LANCZOS), which would otherwise hold megabytes per picture
    (the run folder keeps the full picture). PIL images and ``HxWx3`` arrays show as they are
    (float arrays read as ``[0, 1]``, integer arrays as ``0..255``); ``HxW`` arrays (masks,
    alphas, maps) in grey, from their smallest value (black) to their largest (white).
    Outside IPython (a script, a batch) there is nothing to show it in, and nothing is done.

    Raises:
        ValueError: ``images`` empty, or ``titles`` not one per image.
    """
    images = list(images)
    if not images:
        raise ValueError("images is empty: nothing to show")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"titles has {len(titles)} entries for {len(images)} images")
    from IPython import get_ipython
    from IPython.display import HTML, display

    if get_ipython() is None:
        return
    titles = list(titles) if titles is not None else [""] * len(images)
    cols = max(1, min(cols, len(images)))
    cells = "".join(
        f'<figure style="margin:0"><figcaption style="text-align:center;font-size:9pt">'
        f'{html.escape(str(title))}</figcaption><img style="width:100%" src="data:image/png;'
        f'base64,{_png(image, round(size * PIXELS_PER_INCH))}"></figure>'
        for image, title in zip(images, titles, strict=True)
    )
    grid = f"display:grid;grid-template-columns:repeat({cols},{size}in);gap:6px"
    display(HTML(f'<div style="{grid}">{cells}</div>'))


def _png(image: Image.Image | np.ndarray, limit: int) -> str:
    """``image`` as a base64 PNG, its long side at most ``limit`` px (see :func:`show_images`
    for how arrays are read)."""
    if isinstance(image, Image.Image):
        picture = image if image.mode in ("RGB", "RGBA", "L") else image.convert("RGB")
    else:
        arr = np.asarray(image)
        if arr.ndim == 2:  # grey, stretched over the values' range
            arr = arr.astype(np.float64)
            low, high = float(arr.min()), float(arr.max())
            arr = (arr - low) / (high - low) if high > low else np.zeros_like(arr)
        if arr.dtype.kind == "f":
            arr = np.rint(np.clip(arr, 0.0, 1.0) * 255.0)
        arr = np.clip(arr, 0, 255).astype(np.uint8)
        picture = Image.fromarray(arr)
    if max(picture.size) > limit:
        picture = picture.copy()
        picture.thumbnail((limit, limit), Image.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def table(rows, *, digits: int = 4):
    """``rows`` (a list of dicts, e.g. :func:`~sdsam_nb.score_results`' scores, or a dict of
    dicts such as :func:`~sdsam_nb.expansion_by_method`'s) as a ``pandas.DataFrame``, which a
    notebook shows as a table; floats rounded to ``digits``."""
    import pandas as pd

    if isinstance(rows, dict):
        frame = pd.DataFrame.from_dict(rows, orient="index")
    else:
        frame = pd.DataFrame(list(rows))
    return frame.round(digits)
