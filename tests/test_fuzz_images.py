"""Pictures, masks and the background steps' numbers under hostile but ordinary input: each
gives a correct result or a one-line ValueError naming the argument, never a bare
MemoryError, a picture that silently lost its subject, or minutes of work before failing.
Hypothesis draws the values (no model is loaded: composite and place_subject are pure)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from scipy import ndimage

from sdsam_nb import images, masks
from sdsam_nb.background.composite import composite
from sdsam_nb.background.reframe import canvas_size, place_subject
from sdsam_nb.caching.store import DiskCache, cache_gb
from sdsam_nb.edges import _gaussian_blur, contact_shadow

FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _picture(w: int = 96, h: int = 80) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _blob(w: int = 96, h: int = 80, r: int = 12) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (xx - w // 2) ** 2 + (yy - h // 2) ** 2 <= r * r


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert text and "\n" not in text
    return text


# ------------------------------------------------------------------- composite: the subject


def test_a_feather_wider_than_the_subject_is_refused_not_silently_dropped():
    pic, mask = _picture(), _blob(r=6)
    back = Image.new("RGB", (128, 128), (10, 200, 30))
    with pytest.raises(ValueError) as exc:
        composite(pic, mask, back, feather=1000)
    assert _one_line(exc).startswith("feather=1000 px is too wide for the subject")
    # the widest feather that is allowed still pastes some of the subject whole, and the
    # returned mask and the picture agree on where the subject is
    depth = masks.inner_radius(np.pad(mask, 1))
    out, placed = composite(pic, mask, back, feather=np.ceil(depth) - 1, return_mask=True)
    changed = np.any(np.asarray(out) != np.asarray(back), axis=2)
    assert placed.any() and changed[placed].mean() > 0.9
    # scaled down, the same subject is thinner: the message says at which scale
    with pytest.raises(ValueError, match=r"too wide for the subject at scale=0\.5"):
        composite(pic, mask, back, feather=5, scale=0.5)


@FUZZ
@given(
    feather=st.floats(0, 60),
    scale=st.floats(0.05, 3.0),
    x=st.integers(-200, 200),
    y=st.integers(-200, 200),
    harmonize=st.one_of(st.booleans(), st.floats(0, 1)),
)
def test_composite_pastes_what_its_mask_says_or_refuses_in_one_line(
    feather, scale, x, y, harmonize
):
    pic, mask = _picture(), _blob(r=10)
    back = Image.new("RGB", (160, 120), (0, 0, 0))
    try:
        out, placed = composite(
            pic,
            mask,
            back,
            feather=feather,
            scale=scale,
            position=(x, y),
            harmonize=harmonize,
            return_mask=True,
        )
    except ValueError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert out.size == back.size and placed.shape == (120, 160) and placed.any()
    # wherever the mask says subject, beyond the feathered rim, the picture was painted (the
    # background is black and the random subject is nowhere black in all three channels at
    # once, almost surely); a sliver of the subject left on the canvas may be all rim
    painted = np.asarray(out).any(axis=2)
    core = ndimage.binary_erosion(placed, iterations=int(np.ceil(feather)) + 1)
    if core.any():
        assert painted[core].mean() > 0.5
    assert painted[placed].any()


def test_harmonizing_onto_a_flat_background_keeps_the_subject_visible():
    """Found by the fuzzer: matching the statistics of a flat black background in full would
    flatten the subject to black; its contrast is at most halved and its lightness stops where
    its darkest pixel reaches black."""
    pic, mask = _picture(), _blob(r=10)
    back = Image.new("RGB", (160, 120), (0, 0, 0))
    out, placed = composite(pic, mask, back, feather=0, position=(0, 0), harmonize=1.0,
                            return_mask=True)  # fmt: skip
    subject = np.asarray(out)[placed]
    assert subject.any(axis=1).mean() > 0.99  # nothing of it turned black
    original = np.asarray(pic)[mask].astype(float).mean(axis=1).std()
    assert subject.astype(float).mean(axis=1).std() >= 0.4 * original
    assert subject.mean() < np.asarray(pic)[mask].mean()  # darker, towards the background
    # a subject of a few pixels (scaled down 16x) is not turned black either
    out, placed = composite(pic, mask, back, feather=0, scale=0.0625, position=(0, 0),
                            harmonize=1.0, return_mask=True)  # fmt: skip
    assert np.asarray(out)[placed].any(axis=1).all()


# -------------------------------------------------------------------- sizes and the limit


def test_canvas_and_scale_beyond_the_pixel_limit_are_refused_before_allocating():
    with pytest.raises(ValueError) as exc:
        canvas_size(512, 384, size=(200_000, 200_000))
    assert _one_line(exc).startswith("size=(200000, 200000) is 200000x200000 px (4e+04 mega")
    assert "give a smaller size, or raise $SDSAM_MAX_PIXELS" in str(exc.value)
    with pytest.raises(ValueError, match=r"aspect='20:1'.*choose a squarer aspect"):
        canvas_size(8000, 6000, aspect="20:1")
    with pytest.raises(ValueError) as exc:
        place_subject(_picture(), _blob(), (512, 512), scale=1e6)
    assert _one_line(exc).startswith("at scale=1e+06 the 96x80 picture is")
    assert canvas_size(96, 80, aspect="16:9") == (142, 80)


def test_the_pixel_limit_reads_its_variable_and_refuses_a_bad_one(monkeypatch, tmp_path):
    assert images.max_pixels() == images.MAX_PIXELS == 50_000_000
    monkeypatch.setenv("SDSAM_MAX_PIXELS", "1e4")
    assert images.max_pixels() == 10_000
    path = tmp_path / "big.png"
    _picture(200, 100).save(path)
    # a file is measured from its header: refused before its pixels are decoded
    with pytest.raises(ValueError) as exc:
        images.to_rgb(path, name="image_path")
    assert _one_line(exc).startswith(f"image_path {str(path)!r} is 200x100 px (0.02 megapixels)")
    assert str(exc.value).endswith("downscale it, or raise $SDSAM_MAX_PIXELS")
    with pytest.raises(ValueError, match="^image is 200x100 px"):
        images.to_rgb(_picture(200, 100))
    with pytest.raises(ValueError, match="^mask is 200x100 px"):
        images.to_mask(np.zeros((100, 200), bool))
    for bad in ("lots", "-1", "0", "1.5", "inf", "nan"):
        monkeypatch.setenv("SDSAM_MAX_PIXELS", bad)
        with pytest.raises(ValueError, match="^SDSAM_MAX_PIXELS=.* must be a whole number"):
            images.max_pixels()


def test_pils_own_bomb_guard_becomes_the_same_one_line(monkeypatch, tmp_path):
    path = tmp_path / "wide.png"
    _picture(300, 100).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # errors above twice this
    with pytest.raises(ValueError) as exc:
        images.to_rgb(path)
    assert "over PIL's decompression-bomb limit" in _one_line(exc)


def test_empty_tiny_and_odd_pictures_say_what_is_wrong():
    with pytest.raises(ValueError, match="^image is 0x5: a picture needs pixels"):
        images.to_rgb(np.zeros((5, 0, 3), np.uint8))
    one = Image.new("RGB", (1, 1))
    with pytest.raises(ValueError, match=r"^image is 1x1; both sides must be at least 64 px"):
        composite(one, np.ones((1, 1), bool), Image.new("RGB", (64, 64)))
    with pytest.raises(ValueError, match="^mask has NaN or infinite values"):
        images.to_mask(np.full((4, 4), np.nan))
    lab = Image.new("LAB", (8, 8), (128, 128, 128))  # mid grey: L 50, a and b 0 (stored +128)
    grey = np.asarray(images.to_rgb(lab))
    assert grey.shape == (8, 8, 3) and np.ptp(grey) <= 2 and 100 < grey.mean() < 140


# ----------------------------------------------------------------------- the contact shadow


def test_contact_shadow_bounds_its_distance_and_softness():
    alpha = _blob(64, 64, 10).astype(np.float32)
    with pytest.raises(ValueError, match=r"^distance=1e\+06 px moves the shadow off"):
        contact_shadow(alpha, distance=1e6)
    with pytest.raises(ValueError, match="^softness must be"):
        contact_shadow(alpha, softness=65)
    with pytest.raises(ValueError, match="^direction must be a non-zero"):
        contact_shadow(alpha, direction=(1e400, 0))
    tiny = contact_shadow(alpha, direction=(1e-300, 1e-300))  # normalised without underflow
    assert tiny.shape == alpha.shape and tiny.max() > 0


def test_a_wide_blur_is_the_direct_blur_to_within_three_percent():
    import cv2

    values = np.zeros((256, 256), np.float32)
    values[96:160, 80:176] = 1.0
    for sigma in (17.0, 40.0, 128.0, 256.0):
        fast = _gaussian_blur(values, sigma)
        direct = cv2.GaussianBlur(values, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
        assert np.abs(fast - direct).max() <= 0.03 * direct.max(), sigma


# -------------------------------------------------------------------------- the disk cache


def test_a_cache_folder_that_cannot_be_used_is_named_in_one_line(tmp_path, monkeypatch):
    a_file = tmp_path / "a-file"
    a_file.write_text("mine")
    with pytest.raises(ValueError, match=r"^root .* is a file, not a folder: point"):
        DiskCache(a_file, 1000)
    under = DiskCache(a_file / "cache", 1000)  # under a file: nothing to read, nothing stored
    assert under.get("ab" * 8, "png") is None
    with pytest.raises(ValueError, match=r"^the cache folder .* cannot be used \(.*\): point"):
        under.put("ab" * 8, "png", b"data")
    assert a_file.read_text() == "mine"
    monkeypatch.setenv("SDSAM_CACHE_GB", "1e300")
    with pytest.raises(ValueError, match="^SDSAM_CACHE_GB='1e300' must be a number of GB from 0"):
        cache_gb()


# ------------------------------------------------------------------------ fuzz: the rest

ANY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.lists(st.floats(-1e9, 1e9), max_size=3),
)


def _refused_in_one_line(call) -> object | None:
    """``call()``'s result, or ``None`` when it raised a one-line ValueError (any other
    exception fails the test)."""
    try:
        return call()
    except ValueError as exc:
        assert str(exc) and "\n" not in str(exc) and len(str(exc)) < 500, repr(str(exc))
        return None


@FUZZ
@given(
    direction=st.one_of(ANY, st.tuples(st.floats(), st.floats())),
    distance=ANY,
    softness=ANY,
    squash=ANY,
    opacity=ANY,
)
def test_contact_shadow_takes_any_arguments_or_names_the_bad_one(
    direction, distance, softness, squash, opacity
):
    alpha = _blob(48, 40, 8).astype(np.float32)
    kwargs = dict(
        direction=direction, distance=distance, softness=softness, squash=squash, opacity=opacity
    )
    shadow = _refused_in_one_line(lambda: contact_shadow(alpha, **kwargs))
    if shadow is not None:
        assert shadow.shape == alpha.shape and shadow.dtype == np.float32
        assert np.isfinite(shadow).all() and shadow.min() >= 0 and shadow.max() <= opacity
        assert (shadow[alpha == 1] == 0).all()


@FUZZ
@given(
    size=st.one_of(ANY, st.tuples(st.integers(-10, 10**6), st.integers(-10, 10**6))),
    aspect=st.one_of(st.none(), ANY, st.from_regex(r"\A-?[0-9]{1,7}(\.[0-9])?:-?[0-9]{1,7}\Z")),
    scale=st.one_of(ANY, st.floats(0.01, 1e4)),
    position=st.one_of(ANY, st.sampled_from(["center", "bottom", "left"])),
)
def test_a_canvas_and_a_placed_subject_or_a_one_line_refusal(size, aspect, scale, position):
    canvas = _refused_in_one_line(lambda: canvas_size(96, 80, size=size, aspect=aspect))
    if canvas is None:
        return
    w, h = canvas
    assert w >= 64 and h >= 64 and w * h <= images.max_pixels()
    placed = _refused_in_one_line(
        lambda: place_subject(_picture(), _blob(), canvas, scale=scale, position=position)
    )
    if placed is not None:
        picture, mask, _box = placed
        assert picture.size == canvas and mask.shape == (h, w) and mask.any()


@FUZZ
@given(key=st.text(max_size=140), kind=st.text(max_size=40))
def test_a_cache_entry_is_inside_its_folder_or_its_key_is_refused(tmp_path, key, kind):
    cache = DiskCache(tmp_path / "cache", 10_000)
    path = _refused_in_one_line(lambda: cache.path(key, kind))
    if path is not None:
        assert path.parent == cache.entries and path.name == f"{key}.{kind}"
        assert cache.put(key, kind, b"x") and cache.get(key, kind) == b"x"


def test_a_subject_that_fills_the_frame_gets_a_narrower_band_or_the_feather():
    from sdsam_nb.edges import edge_closeups, fit_band

    mask = np.ones((80, 96), bool)
    mask[:, :4] = False  # 4 px of background: room for a 3-px band, not an 8-px one
    assert fit_band(mask, 8) == 3
    mask[:, 1:4] = True  # 1 px of background: no band fits, the feather is used
    assert fit_band(mask, 8) is None
    closeups = edge_closeups(_picture(), mask, _picture(), feather=2)
    assert len(closeups) == 2 and all(c.size == closeups[0].size for c in closeups)
