"""Mask tools on hand-made masks with hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from sdsam_nb import masks


def square(h=30, w=30, y0=10, x0=10, side=10) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[y0 : y0 + side, x0 : x0 + side] = True
    return m


def disc(h=80, w=100, cx=50, cy=40, r=25) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return (xx - cx) ** 2 + (yy - cy) ** 2 < r**2


# ------------------------------------------------------------------ clean-up


def test_fill_holes_fills_a_ring_but_not_a_bay_open_to_the_border():
    ring = square(side=10)
    ring[13:17, 13:17] = False  # a 4x4 hole
    filled = masks.fill_holes(ring)
    assert filled.dtype == bool and filled.shape == (30, 30)
    assert np.array_equal(filled, square(side=10))

    bay = np.zeros((10, 10), bool)
    bay[:, 2:8] = True
    bay[0:4, 4:6] = False  # touches the top border: not a hole
    assert np.array_equal(masks.fill_holes(bay), bay)


def test_remove_small_drops_a_3px_island_and_keeps_a_50px_one():
    m = np.zeros((40, 40), bool)
    m[2, 2:5] = True  # 3 px
    m[20:25, 10:20] = True  # 50 px
    out = masks.remove_small(m, 10)
    assert out.sum() == 50 and out[20:25, 10:20].all() and not out[2].any()
    assert np.array_equal(masks.remove_small(m, 50), out)  # exactly min_area is kept
    assert masks.remove_small(m, 51).sum() == 0
    assert np.array_equal(masks.remove_small(m, 0), m)


def test_remove_small_counts_diagonal_neighbours_as_one_island():
    m = np.zeros((10, 10), bool)
    m[[1, 2, 3], [1, 2, 3]] = True  # a 3-px diagonal line: one 8-connected island
    assert masks.remove_small(m, 3).sum() == 3


# ------------------------------------------------------------------ grow / shrink


def test_grow_by_2_with_a_disk_gives_the_hand_counted_area():
    m = square()
    # 14x14 = 196 less 3 corner pixels per corner ((1,2), (2,1), (2,2) are farther than 2).
    assert masks.grow(m, 2).sum() == 184
    assert masks.grow(m, 1).sum() == 100 + 4 * 10
    assert masks.grow(m, 1.5).sum() == 100 + 4 * 10 + 4  # adds the diagonal corners
    assert masks.grow(m, 0).sum() == 100


def test_grow_adds_exactly_the_pixels_within_px():
    m = disc(r=12) | square(80, 100, 5, 70, 6)
    for px in (1, 3, 4.5):
        grown = masks.grow(m, px)
        dist = ndimage.distance_transform_edt(~m)
        assert np.array_equal(grown, dist <= px)
        assert grown[m].all()


def test_shrink_and_negative_grow():
    m = square()
    assert masks.shrink(m, 2).sum() == 36
    assert np.array_equal(masks.shrink(m, 2), square(side=6, y0=12, x0=12))
    assert np.array_equal(masks.grow(m, -2), masks.shrink(m, 2))
    assert masks.shrink(m, 5).sum() == 0
    # shrink is the complement of growing the background
    d = disc() & ~square(80, 100, 30, 40, 8)
    assert np.array_equal(masks.shrink(d, 3), ~masks.grow(~d, 3))


def test_picture_border_is_not_an_edge():
    m = np.zeros((20, 20), bool)
    m[:, :10] = True  # touches the left, top and bottom borders
    out = masks.shrink(m, 2)
    assert np.array_equal(out, np.pad(np.ones((20, 8), bool), ((0, 0), (0, 12))))
    assert masks.shrink(np.ones((5, 5), bool), 3).all()
    assert masks.grow(np.zeros((5, 5), bool), 3).sum() == 0


# ------------------------------------------------------------------ feather


@pytest.mark.parametrize("radius", [1, 4, 6.5])
def test_feather_is_one_exactly_on_shrink_and_zero_outside(radius):
    m = disc()
    alpha = masks.feather(m, radius)
    assert alpha.dtype == np.float32 and alpha.shape == m.shape
    assert np.array_equal(alpha == 1.0, masks.shrink(m, radius))
    assert np.array_equal(alpha == 0.0, ~m)
    ramp = m & ~masks.shrink(m, radius)
    assert ramp.any() and ((alpha[ramp] > 0) & (alpha[ramp] < 1)).all()


def test_feather_ramp_rises_towards_the_inside():
    m = np.zeros((1, 30), bool)
    m[0, 5:25] = True
    alpha = masks.feather(m, 6)[0]
    # from the left edge inwards: 0.5 / 6 ... 5.5 / 6 through smoothstep, then 1
    t = (np.arange(1, 7) - 0.5) / 6
    assert np.allclose(alpha[5:11], t * t * (3 - 2 * t), atol=1e-6)
    assert np.all(np.diff(alpha[4:15]) >= 0)
    assert alpha[11] == 1.0 and alpha[4] == 0.0


def test_feather_radius_zero_and_edge_cases():
    m = disc()
    assert np.array_equal(masks.feather(m, 0), m.astype(np.float32))
    assert masks.feather(np.ones((8, 8), bool), 3).min() == 1.0
    assert masks.feather(np.zeros((8, 8), bool), 3).max() == 0.0


# ------------------------------------------------------------------ bbox / input


def test_bbox_is_inclusive_exclusive_like_slices():
    m = np.zeros((50, 80), bool)
    m[20:40, 10:70] = True
    assert masks.bbox(m) == (10, 20, 70, 40)
    x0, y0, x1, y1 = masks.bbox(m)
    assert m[y0:y1, x0:x1].all() and m[y0:y1, x0:x1].sum() == m.sum()
    one = np.zeros((5, 5), bool)
    one[3, 1] = True
    assert masks.bbox(one) == (1, 3, 2, 4)
    assert all(type(v) is int for v in masks.bbox(one))
    assert masks.bbox(np.zeros((5, 5), bool)) is None


def test_mask_forms_accepted():
    m = square()
    as_255 = m.astype(np.uint8) * 255
    assert np.array_equal(masks.grow(as_255, 1), masks.grow(m, 1))
    as_image = Image.fromarray(as_255)
    assert np.array_equal(masks.shrink(as_image, 1), masks.shrink(m, 1))


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda m: masks.feather(m, -1), "radius"),
        (lambda m: masks.feather(m, float("nan")), "radius"),
        (lambda m: masks.shrink(m, -2), "px"),
        (lambda m: masks.grow(m, "3"), "px"),
        (lambda m: masks.grow(m, float("inf")), "px"),
        (lambda m: masks.remove_small(m, -1), "min_area"),
        (lambda m: masks.remove_small(m, 2.5), "min_area"),
        (lambda m: masks.fill_holes(np.zeros((4, 4, 3))), "mask"),
        (lambda m: masks.bbox("not a mask"), "mask"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(call, name):
    with pytest.raises(ValueError, match=name):
        call(square())


# ------------------------------------------------------------------ overlay


def test_overlay_colours_mask_outline_markers_and_box():
    img = Image.new("RGB", (100, 80), (100, 100, 100))
    m = np.zeros((80, 100), bool)
    m[20:60, 30:80] = True
    out = masks.overlay(
        img,
        m,
        color=(30, 144, 254),
        alpha=0.5,
        points=[(40, 30), (70, 50)],
        labels=[1, 0],
        box=(5, 5, 95, 75),
    )
    assert out.mode == "RGB" and out.size == (100, 80)
    a = np.asarray(out)
    assert tuple(a[40, 55]) == (65, 122, 177)  # inside: half-way to the colour
    assert tuple(a[10, 20]) == (100, 100, 100)  # outside, away from the box
    assert tuple(a[20, 55]) == (30, 144, 254)  # on the outline
    assert tuple(a[30, 40]) == masks.POSITIVE_COLOR
    assert tuple(a[50, 70]) == masks.NEGATIVE_COLOR
    assert tuple(a[5, 50]) == masks.BOX_COLOR
    assert tuple(a[40, 5]) == masks.BOX_COLOR


def test_overlay_without_outline_points_or_mask():
    img = np.full((40, 40, 3), 200, np.uint8)
    m = np.zeros((40, 40), bool)
    m[10:30, 10:30] = True
    a = np.asarray(masks.overlay(img, m, color=(0, 0, 0), alpha=1.0, outline=False))
    assert (a[m] == 0).all() and (a[~m] == 200).all()
    plain = np.asarray(masks.overlay(img, points=[[20, 20]]))
    assert tuple(plain[20, 20]) == masks.POSITIVE_COLOR and tuple(plain[0, 0]) == (200,) * 3


def test_overlay_rejects_bad_input():
    img = Image.new("RGB", (50, 40))
    with pytest.raises(ValueError, match="mask"):
        masks.overlay(img, np.zeros((41, 50), bool))  # wrong size
    with pytest.raises(ValueError, match="labels"):
        masks.overlay(img, points=[(1, 2)], labels=[2])
    with pytest.raises(ValueError, match="points"):
        masks.overlay(img, points=[(1, 2, 3)])
    with pytest.raises(ValueError, match="box"):
        masks.overlay(img, box=(1, 2, 3))
    with pytest.raises(ValueError, match="alpha"):
        masks.overlay(img, alpha=1.5)
    with pytest.raises(ValueError, match="outline must be True or False"):
        masks.overlay(img, outline="no")


def test_overlay_draws_far_off_points_and_boxes_as_invisible_not_as_an_opencv_error():
    img = np.full((40, 50, 3), 200, np.uint8)
    far = masks.overlay(img, points=[[1e12, 5], [-1e15, 5]], labels=[1, 0], box=(-1e12, 5, 1e12, 9))
    want = masks.overlay(img, box=(-100, 5, 200, 9))  # the same visible part of the box
    assert np.array_equal(np.asarray(far), np.asarray(want))
    assert (np.asarray(want)[20:] == 200).all()
