"""The image and mask conventions: every input form, the documented conversion rule, errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sdsam_nb.images import check_min_size, check_subject, to_mask, to_rgb


def test_to_rgb_from_every_form(tmp_path):
    rgb = np.zeros((10, 20, 3), np.uint8)
    rgb[..., 0] = 200
    assert np.array_equal(np.asarray(to_rgb(rgb)), rgb)
    assert to_rgb(Image.fromarray(rgb)).mode == "RGB"
    path = tmp_path / "x.png"
    Image.fromarray(rgb).save(path)
    assert np.array_equal(np.asarray(to_rgb(path)), rgb)
    assert np.array_equal(np.asarray(to_rgb(str(path))), rgb)


def test_to_rgb_conversion_rule():
    # transparency onto white
    rgba = np.zeros((2, 2, 4), np.uint8)
    assert np.asarray(to_rgb(rgba))[0, 0].tolist() == [255, 255, 255]
    # 16-bit scaled from its full range, floats taken as 0..1, greyscale to three channels
    assert np.asarray(to_rgb(np.full((2, 2), 65535, np.uint16)))[0, 0].tolist() == [255] * 3
    assert np.asarray(to_rgb(np.full((2, 2, 3), 0.5)))[0, 0].tolist() == [128] * 3
    # a resampling filter's small overshoot outside 0..1 is clipped
    overshoot = np.array([[-0.05, 1.05]], np.float32)
    assert np.asarray(to_rgb(overshoot))[0, :, 0].tolist() == [0, 255]
    assert np.asarray(to_rgb(Image.fromarray(overshoot, mode="F")))[0, :, 0].tolist() == [0, 255]
    assert np.asarray(to_rgb(np.full((2, 2, 1), 7, np.uint8)))[0, 0].tolist() == [7] * 3


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.zeros((2, 2, 2), np.uint8), "image array must be HxW, HxWx3 or HxWx4"),
        (np.zeros((2, 2), np.int64), "image array must be uint8, uint16 or float"),
        (np.full((2, 2), np.nan), "NaN or infinite"),
        # a 0..255 or -1..1 float picture is refused, not clipped to white or black
        (np.full((2, 2, 3), 200.0), "floats from 200 to 200, .* divide a 0..255 array by 255"),
        (np.linspace(-1, 1, 12).reshape(2, 2, 3), "floats from -1 to 1, .* \\(x \\+ 1\\) / 2"),
        (Image.fromarray(np.full((2, 2), 255.0, np.float32), mode="F"), "mode F\\) holds floats"),
        (3, "image must be a PIL image, a numpy array or a path"),
    ],
)
def test_to_rgb_bad_input_names_the_argument(value, message):
    with pytest.raises(ValueError, match=message):
        to_rgb(value)


def test_to_rgb_missing_or_unreadable_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="photo: no image file"):
        to_rgb(tmp_path / "none.png", name="photo")
    (tmp_path / "bad.png").write_text("not a picture")
    with pytest.raises(ValueError, match="is not an image PIL can read"):
        to_rgb(tmp_path / "bad.png")


def test_to_mask_accepts_the_usual_forms_and_checks_the_size():
    expected = np.array([[True, False], [False, True]])
    for form in (
        expected,
        expected.astype(np.uint8),
        expected.astype(np.uint8) * 255,
        expected.astype(np.float32),
        expected[..., None],
        Image.fromarray(expected.astype(np.uint8) * 255),
    ):
        assert np.array_equal(to_mask(form, (2, 2)), expected)
    with pytest.raises(ValueError, match="mask_path"):
        to_mask(expected, (3, 2), name="mask_path")


def test_subject_and_size_checks():
    with pytest.raises(ValueError, match="both sides must be at least 64 px"):
        check_min_size(Image.new("RGB", (63, 100)))
    check_min_size(Image.new("RGB", (64, 64)))
    with pytest.raises(ValueError, match="mask"):
        check_subject(np.zeros((4, 4), bool), name="mask")
    with pytest.raises(ValueError, match="mask"):
        check_subject(np.ones((4, 4), bool), name="mask")
    check_subject(np.eye(4, dtype=bool))
