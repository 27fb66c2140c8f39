"""Pictures in notebooks: grids of images with titles, drawn with matplotlib."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image


def show_images(
    images: Sequence[Image.Image | np.ndarray],
    titles: Sequence[str] | None = None,
    *,
    cols: int = 4,
    size: float = 3.5,
):
    """Show ``images`` (PIL or ``HxWx3``/``HxW`` arrays) in a grid; return the figure.

    Each cell keeps its picture's aspect ratio; ``size`` is a cell's width in inches.
    """
    import matplotlib.pyplot as plt

    images = list(images)
    if not images:
        raise ValueError("images is empty: nothing to show")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"titles has {len(titles)} entries for {len(images)} images")
    cols = max(1, min(cols, len(images)))
    rows = math.ceil(len(images) / cols)
    first = np.asarray(images[0])
    aspect = first.shape[0] / first.shape[1]
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * aspect * rows + 0.4 * rows))
    axes = np.atleast_1d(axes).ravel()
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i < len(images):
            arr = np.asarray(images[i])
            ax.imshow(arr, cmap="gray" if arr.ndim == 2 else None)
            if titles is not None:
                ax.set_title(titles[i], fontsize=9)
    fig.tight_layout()
    plt.show()
    return fig


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
