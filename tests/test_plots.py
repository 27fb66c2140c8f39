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
    [
        ([], None, "images is empty"),
        ([np.zeros((8, 8))], ["a", "b"], "titles has 2 entries"),
        ([np.zeros((8, 8, 2))], None, r"images\[0\] must be a PIL image.*\(8, 8, 2\)"),
        ([np.zeros((8, 8)), "a.png"], None, r"images\[1\] must be .*not str"),
        ([np.zeros((0, 8, 3))], None, r"images\[0\] must be"),
    ],
)
def test_bad_input_is_refused_in_one_line(shown, images, titles, message):
    with pytest.raises(ValueError, match=message):
        show_images(images, titles)
    assert not shown


@pytest.mark.parametrize(("option", "message"), [({"cols": 0}, "cols must be >= 1"),
                                                  ({"size": -1}, "size must be > 0")])  # fmt: skip
def test_bad_options_are_refused_in_one_line(option, message):
    with pytest.raises(ValueError, match=message):
        show_images([np.zeros((8, 8))], **option)


def test_one_channel_and_nan_arrays_show_in_grey(shown):
    one = np.zeros((6, 8, 1), np.uint8)
    one[:3] = 9
    nan = np.full((6, 8), np.nan)
    nan[0, 0] = 1.0
    show_images([one, nan, np.ones((6, 8), bool)])
    first, second, everything = _pictures(shown[0].data)
    assert first.shape == (6, 8) and first.max() == 255 and first.min() == 0
    assert second.shape == (6, 8)
    assert (everything == 255).all()  # a mask of all True is white, not stretched to black
