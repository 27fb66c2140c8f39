"""Picture grids in notebooks: each picture shown at its own pixels, with its title; nothing
done outside IPython; bad input refused in one line."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from sdsam_nb.plots import show_images


@pytest.fixture
def shown(monkeypatch) -> list:
    """What show_images displays, as if in a notebook's kernel."""
    out = []
    monkeypatch.setattr("IPython.get_ipython", lambda: object())
    monkeypatch.setattr("IPython.display.display", out.append)
    return out


def _pictures(html: str) -> list[np.ndarray]:
    return [
        np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))
        for data in re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    ]


def test_a_grid_shows_each_picture_at_its_own_pixels_under_its_title(shown):
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    mask = np.zeros((48, 64), bool)
    mask[10:20, 5:30] = True
    alpha = np.linspace(0.2, 0.7, 64 * 48, dtype=np.float32).reshape(48, 64)
    assert show_images([picture, mask, alpha], ["seed 0", "mask <1>", "alpha"], cols=2) is None
    (grid,) = shown
    html = grid.data
    assert "repeat(2,3.5in)" in html
    assert [t.strip() for t in re.findall(r"<figcaption[^>]*>([^<]*)<", html)] == [
        "seed 0",
        "mask &lt;1&gt;",
        "alpha",
    ]
    rgb, grey, stretched = _pictures(html)
    assert np.array_equal(rgb, np.asarray(picture))  # not resampled
    assert np.array_equal(grey, mask.astype(np.uint8) * 255)
    assert stretched.min() == 0 and stretched.max() == 255  # the values' range, black to white


def test_a_large_picture_is_scaled_down_for_the_notebook(shown):
    """A 12-megapixel photo would put megabytes into the notebook: it is shown at
    PIXELS_PER_INCH * size px on its long side, its aspect ratio kept."""
    photo = Image.new("RGB", (4000, 3000), (200, 120, 40))
    show_images([photo], size=2.0)
    (picture,) = _pictures(shown[0].data)
    assert picture.shape[:2] == (288, 384)  # 2 in * 192 px = 384 px wide
    assert tuple(picture[100, 100]) == (200, 120, 40)


def test_nothing_is_shown_outside_ipython(monkeypatch):
    monkeypatch.setattr("IPython.get_ipython", lambda: None)
    monkeypatch.setattr("IPython.display.display", lambda *a: pytest.fail("displayed"))
    show_images([np.zeros((8, 8, 3), np.uint8)])


@pytest.mark.parametrize(
    ("images", "titles", "message"),
    [([], None, "images is empty"), ([np.zeros((8, 8))], ["a", "b"], "titles has 2 entries")],
)
def test_bad_input_is_refused_in_one_line(images, titles, message):
    with pytest.raises(ValueError, match=message):
        show_images(images, titles)
