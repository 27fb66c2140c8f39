"""Pictures in notebooks: grids of images with titles, and tables."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from .validate import check_int, check_number

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
    alphas, maps) in grey, from their smallest value (black) to their largest (white), a
    boolean mask's ``True`` white.
    Outside IPython (a script, a batch) there is nothing to show it in, and nothing is done.

    Raises:
        ValueError: ``images`` empty or holding something that is not a picture, ``titles``
            not one per image, ``cols`` not an integer >= 1, ``size`` not a number > 0.
    """
    images = list(images)
    if not images:
        raise ValueError("images is empty: nothing to show")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"titles has {len(titles)} entries for {len(images)} images")
    cols = check_int(cols, "cols", low=1)
    size = check_number(size, "size", low=0, open_low=True)
    pictures = [_picture(image, i) for i, image in enumerate(images)]
    from IPython import get_ipython
    from IPython.display import HTML, display

    if get_ipython() is None:
        return
    titles = list(titles) if titles is not None else [""] * len(images)
    cols = min(cols, len(images))
    cells = "".join(
        f'<figure style="margin:0"><figcaption style="text-align:center;font-size:9pt">'
        f'{html.escape(str(title))}</figcaption><img style="width:100%" src="data:image/png;'
        f'base64,{_png(picture, round(size * PIXELS_PER_INCH))}"></figure>'
        for picture, title in zip(pictures, titles, strict=True)
    )
    grid = f"display:grid;grid-template-columns:repeat({cols},{size}in);gap:6px"
    display(HTML(f'<div style="{grid}">{cells}</div>'))


def _picture(image, i: int) -> Image.Image:
    """``images[i]`` as a PIL image to show (see :func:`show_images` for how arrays are read).

    Raises:
        ValueError: not a PIL image, nor a 2-D array, nor an ``HxWx1/3/4`` array of numbers.
    """
    if isinstance(image, Image.Image):
        return image if image.mode in ("RGB", "RGBA", "L") else image.convert("RGB")
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    shaped = arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))
    if not shaped or arr.dtype.kind not in "biuf" or 0 in arr.shape:
        raise ValueError(
            f"images[{i}] must be a PIL image, an HxW array or an HxWx3 / HxWx4 array of "
            f"numbers, not {type(image).__name__} of shape {arr.shape} ({arr.dtype})"
        )
    if arr.dtype == bool:  # a mask: True white
        arr = arr.astype(np.uint8) * 255
    elif arr.ndim == 2:  # grey, stretched over the values' range
        arr = np.nan_to_num(arr.astype(np.float64))
        low, high = float(arr.min()), float(arr.max())
        arr = (arr - low) / (high - low) if high > low else np.zeros_like(arr)
    if arr.dtype.kind == "f":
        arr = np.rint(np.clip(np.nan_to_num(arr), 0.0, 1.0) * 255.0)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _png(picture: Image.Image, limit: int) -> str:
    """``picture`` as a base64 PNG, its long side at most ``limit`` px."""
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
