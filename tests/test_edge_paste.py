"""The subject's edge where the kit pastes it: composite, inpaint_background's paste-back and
reframe with edge="feather" | "matte" | an alpha, and composite's contact shadow."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import sdsam_nb
from sdsam_nb import masks
from sdsam_nb.edges import DEFAULT_BAND, edge_closeups, subject_alpha


def _background(w=300, h=200):
    yy, xx = np.mgrid[0:h, 0:w]
    return Image.fromarray(
        np.stack([xx * 255 // w, np.full_like(xx, 200), yy * 255 // h], -1).astype(np.uint8)
    )


def test_composite_with_an_alpha_is_the_textbook_blend(subject_image, subject_mask):
    alpha = masks.feather(subject_mask, 6).astype(np.float32) * 0.9
    back = _background()
    out = sdsam_nb.composite(subject_image, subject_mask, back, edge=alpha, position=(0, 0))
    # (0, 0) puts the mask's box at the corner; the cut-out (the alpha's box) around it
    x0, y0, x1, y1 = masks.bbox(alpha > 0)
    mx0, my0 = masks.bbox(subject_mask)[:2]
    ox, oy = mx0 - x0, my0 - y0
    a = alpha[y0 + oy : y1, x0 + ox : x1, None]
    f = np.asarray(subject_image, np.float64)[y0 + oy : y1, x0 + ox : x1]
    h, w = a.shape[:2]
    b = np.asarray(back, np.float64)[:h, :w]
    expected = a * f + (1 - a) * b
    # to rounding: the kit blends in float32 and rounds to the nearest integer
    np.testing.assert_allclose(np.asarray(out)[:h, :w], expected, atol=0.51)


def test_composite_matte_keeps_the_inside_and_is_placed_like_the_feather(
    subject_image, subject_mask
):
    back = _background()
    feathered, placed = sdsam_nb.composite(subject_image, subject_mask, back, return_mask=True)
    matted, placed_m = sdsam_nb.composite(
        subject_image, subject_mask, back, edge="matte", return_mask=True
    )
    assert np.array_equal(placed, placed_m)  # the mask lands in the same place
    core = masks.shrink(placed, DEFAULT_BAND)
    assert np.array_equal(np.asarray(matted)[core], np.asarray(feathered)[core])
    assert not np.array_equal(np.asarray(matted), np.asarray(feathered))  # the edge differs


def test_the_contact_shadow_darkens_only_around_the_subject(subject_image, subject_mask):
    back = _background()
    plain, placed = sdsam_nb.composite(subject_image, subject_mask, back, return_mask=True)
    shaded = sdsam_nb.composite(
        subject_image, subject_mask, back, shadow={"opacity": 0.5, "softness": 4}
    )
    a, b = np.asarray(plain, np.float64), np.asarray(shaded, np.float64)
    assert (b <= a + 0.5).all()  # only ever darker
    darker = (a - b).max(axis=2) > 1
    assert darker.any() and not (darker & masks.shrink(placed, 4)).any()
    ratio = b[darker] / np.maximum(a[darker], 1)
    assert ratio.min() >= 0.5 - 0.02  # never darker than the opacity allows
    with pytest.raises(ValueError, match="shadow: unknown option"):
        sdsam_nb.composite(subject_image, subject_mask, back, shadow={"angle": 3})
    with pytest.raises(ValueError, match="shadow must be True, False or a dict"):
        sdsam_nb.composite(subject_image, subject_mask, back, shadow="soft")


def test_inpaint_with_a_matted_edge_keeps_the_subject_inside_the_band(
    tiny_sd, subject_image, subject_mask
):
    out = sdsam_nb.inpaint_background(
        tiny_sd, subject_image, subject_mask, "a beach", steps=2, size=96, edge="matte"
    )
    core = masks.shrink(subject_mask, DEFAULT_BAND)
    assert np.array_equal(np.asarray(out[0])[core], np.asarray(subject_image)[core])
    assert len(out.painted) == 1 and out.painted[0].size == out[0].size
    alpha, colours = subject_alpha(subject_image, subject_mask, "matte", feather=3)
    a = alpha[..., None]
    expected = np.rint(a * colours + (1 - a) * np.asarray(out.painted[0], np.float64))
    np.testing.assert_allclose(np.asarray(out[0]), expected, atol=1)


def test_reframe_with_a_matted_edge(tiny_sd, subject_image, subject_mask):
    out = sdsam_nb.reframe(
        tiny_sd,
        subject_image,
        subject_mask,
        "a beach",
        aspect="16:9",
        scale=0.8,
        edge="matte",
        steps=2,
        work_size=96,
    )
    assert out[0].size == (356, 200)


@pytest.mark.parametrize(
    ("edge", "match"),
    [
        ("soft", r"edge must be one of \['feather', 'matte'\]"),
        (np.zeros((10, 10)), r"edge is 10x10 but the picture is 200x300 \(HxW\)"),
        (np.full((200, 300), 1.5), r"edge must be finite values in 0..1"),
    ],
    ids=["name", "size", "range"],
)
def test_bad_edges_fail_before_any_sampling(tiny_sd, subject_image, subject_mask, edge, match):
    with pytest.raises(ValueError, match=match) as e:
        sdsam_nb.inpaint_background(tiny_sd, subject_image, subject_mask, "x", edge=edge)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=match):
        sdsam_nb.composite(subject_image, subject_mask, _background(), edge=edge)


def test_close_ups_show_the_same_stretch_of_edge(subject_image, subject_mask):
    feather, matte = edge_closeups(subject_image, subject_mask, _background(), feather=3)
    assert feather.size == matte.size == (288, 288)
    assert not np.array_equal(np.asarray(feather), np.asarray(matte))
