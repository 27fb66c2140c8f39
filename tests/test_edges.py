"""Soft edges: trimap, the band widened along strands, alpha matting (closed-form and the tiny
ViTMatte), foreground decontamination, the contact shadow and the compositing equation, on
synthetic pictures whose true alpha and subject colours are known."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import python_says
from PIL import Image

from sdsam_nb import edges
from sdsam_nb.masks import feather, grow, shrink

SIZE = 160


def _truth() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(alpha, F, B)``: a wobbly disc with a 5-px soft ramp and 40 thin strands (partial
    coverage, alpha 0.5-0.9 at their core), a smooth orange-to-purple subject over a striped
    blue-green background."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    c = SIZE / 2
    theta = np.arctan2(yy - c, xx - c)
    radius = SIZE * 0.28 * (1 + 0.06 * np.sin(3 * theta))
    body = np.clip((radius - np.hypot(xx - c, yy - c)) / 5.0 + 0.5, 0, 1)
    ss = 4  # strands drawn 4x supersampled, then averaged: sub-pixel widths
    canvas = np.zeros((SIZE * ss, SIZE * ss), np.float32)
    for _ in range(40):
        t = rng.uniform(0, 2 * np.pi)
        start = SIZE * 0.28 * (1 + 0.06 * np.sin(3 * t)) - 3
        length = rng.uniform(4, 10)
        pts = [
            ((c + (start + u) * np.cos(t)) * ss, (c + (start + u) * np.sin(t)) * ss)
            for u in np.linspace(0, length, 6)
        ]
        value = float(rng.uniform(0.5, 0.9))
        cv2.polylines(canvas, [np.int32(np.round(pts))], False, value, 3, cv2.LINE_AA)
    strands = cv2.resize(canvas, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    alpha = np.maximum(body, np.clip(strands, 0, 1))
    fg = np.stack([200 + 40 * xx / SIZE, 120 - 60 * yy / SIZE, 60 + 120 * yy / SIZE], -1)
    bg = np.stack(
        [40 + 30 * np.sin(xx / 4), 150 + 60 * np.sin((xx + yy) / 7), 90 + 50 * np.cos(yy / 5)], -1
    )
    return alpha, fg, bg


@pytest.fixture(scope="module")
def scene():
    alpha, fg, bg = _truth()
    a = alpha[..., None]
    image = np.clip(np.rint(a * fg + (1 - a) * bg), 0, 255).astype(np.uint8)
    return {"alpha": alpha, "fg": fg, "bg": bg, "image": image, "mask": alpha > 0.5}


@pytest.fixture(scope="module")
def estimated(scene):
    return edges.matte(scene["image"], scene["mask"], band=8, method="closed_form")


def _strand_truth() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(alpha, F, B, mask)``: a hard-edged disc of radius 45 px and, on its right side only,
    60 straight strands (about 1 px wide, alpha 0.7-1 at their core) from 3 px inside its edge
    to 20-35 px beyond it, of the subject's colours over a smooth blue-green background; the
    mask is the disc without the strands."""
    rng = np.random.default_rng(1)
    size, radius = 200, 45.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    c = size / 2
    body = np.clip(radius - np.hypot(xx - c, yy - c) + 0.5, 0, 1)
    ss = 4
    canvas = np.zeros((size * ss, size * ss), np.float32)
    for _ in range(60):
        t = rng.uniform(-1.2, 1.2)  # the right side only
        u = np.linspace(radius - 3, radius + rng.uniform(20, 35), 12)
        pts = np.stack([c + u * np.cos(t), c + u * np.sin(t)], -1) * ss
        value = float(rng.uniform(0.7, 1.0))
        cv2.polylines(canvas, [np.int32(np.round(pts))], False, value, 4, cv2.LINE_AA)
    strands = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
    alpha = np.maximum(body, np.clip(strands, 0, 1))
    fg = np.stack([200 + 40 * xx / size, 120 - 60 * yy / size, 60 + 60 * yy / size], -1)
    bg = np.stack(
        [40 + 30 * np.sin(xx / 9), 150 + 40 * np.sin((xx + yy) / 13), 90 + 30 * np.cos(yy / 11)],
        -1,
    )
    return alpha, fg, bg, body > 0.5


@pytest.fixture(scope="module")
def strand_scene():
    alpha, fg, bg, mask = _strand_truth()
    a = alpha[..., None]
    image = np.clip(np.rint(a * fg + (1 - a) * bg), 0, 255).astype(np.uint8)
    outside = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)
    return {"alpha": alpha, "fg": fg, "bg": bg, "image": image, "mask": mask, "outside": outside}


def test_trimap_marks_sure_subject_background_and_band(scene):
    m = scene["mask"]
    tri = edges.trimap(m, 6)
    assert tri.dtype == np.uint8 and tri.shape == m.shape
    assert set(np.unique(tri)) == {0, 128, 255}
    assert np.array_equal(tri == 255, shrink(m, 6))
    assert np.array_equal(tri == 0, ~grow(m, 6))
    # under 1 px (and not widened along strands) no pixel is in doubt: the alpha is the mask
    hard = edges.matte(scene["image"], m, band=0.5, reach=0.5)
    assert hard.dtype == np.float32 and np.array_equal(hard, m.astype(np.float32))


def test_closed_form_alpha_obeys_the_trimap(scene, estimated):
    m = scene["mask"]
    # strands 4-10 px long, starting inside the edge, stay in the band: it keeps its width
    assert not edges.strand_band(scene["image"], m, band=8).any()
    assert estimated.dtype == np.float32 and estimated.shape == m.shape
    assert np.all(estimated[shrink(m, 8)] == 1.0)
    assert np.all(estimated[~grow(m, 8)] == 0.0)
    assert 0.0 <= estimated.min() and estimated.max() <= 1.0
    band = edges.trimap(m, 8) == 128
    assert 0.1 < estimated[band].mean() < 0.9  # a real estimate, not the mask again


def test_band_widens_where_strands_continue_and_keeps_its_width_on_a_hard_edge(strand_scene):
    image, m, outside = strand_scene["image"], strand_scene["mask"], strand_scene["outside"]
    strands = edges.strand_band(image, m, band=8, reach=40)
    assert strands.dtype == bool and strands.shape == m.shape and not (strands & m).any()
    assert outside[strands].max() <= 40
    tri = edges.trimap(m, 8, strands=strands)
    fixed = edges.trimap(m, 8)
    right, left = np.s_[:, 100:], np.s_[:, :100]
    # the strands' side: the unknown band runs out along them, past twice the band
    beyond = (tri == edges.UNKNOWN) & (outside > 16)
    assert beyond[right].sum() > 1000, beyond[right].sum()
    true_strands = (strand_scene["alpha"] > 0.1) & (outside > 8)
    assert (tri[true_strands] == edges.UNKNOWN).mean() > 0.9  # the fixed band: none
    # the hard edge: exactly the default band, and the matte there is the fixed band's
    assert np.array_equal(tri[left], fixed[left])
    assert not edges.strand_band(image, m, band=8, reach=8).any()  # reach <= band: fixed
    assert np.array_equal(
        edges.matte(image, m, reach=8, method="closed_form"),
        edges.matte(image, m, band=8, reach=0, method="closed_form"),
    )


def test_a_group_of_strands_widens_the_band_further_than_a_lone_line():
    """4 lines leaving a disc on its left, 4 px apart, and one on its right, each of the
    subject's colour to 20 px out and then, after a 2-px gap, 13 px of a colour that has it
    only loosely (a tenth of the way from the background): the band takes STRAND_MARGIN px
    around the group and its loose ends (hysteresis), 2 px around the lone line's strict part
    only (as likely the background's). Fails with STRAND_GROUP 1 or 6, or STRAND_JOIN 0."""
    size, c = 160, 80
    mask = np.hypot(*(np.mgrid[0:size, 0:size] - c)) <= 40
    image = np.zeros((size, size, 3), np.uint8)
    image[:] = (40, 150, 90)
    image[mask] = (220, 110, 70)
    drawn = np.zeros((size, size), np.uint8)
    for t in (np.pi - 0.15, np.pi - 0.05, np.pi + 0.05, np.pi + 0.15, 0.0):
        ends = [(round(c + r * np.cos(t)), round(c + r * np.sin(t))) for r in (37, 60, 62, 75)]
        cv2.line(image, ends[0], ends[1], (220, 110, 70), 1)
        cv2.line(image, ends[2], ends[3], (58, 116, 148), 1)  # after a gap; share 0.1: loose
        cv2.line(drawn, ends[0], ends[3], 1, 1)
    strands = edges.strand_band(image, mask, band=8)
    away = cv2.distanceTransform((drawn == 0).astype(np.uint8), cv2.DIST_L2, 5)
    outside = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)
    left, right = np.s_[:, :c], np.s_[:, c:]
    assert strands[left].any() and strands[right].any()
    assert away[left][strands[left]].max() >= edges.STRAND_MARGIN - 1
    assert outside[left][strands[left]].max() > 30  # the loose ends, taken with the group
    assert away[right][strands[right]].max() <= 3  # the lone line: 2 px (the line ~1 px wide)
    assert outside[right][strands[right]].max() < 25  # and its strict part only


def test_matte_recovers_strands_beyond_the_mask_better_than_the_fixed_band(strand_scene):
    image, m, outside = strand_scene["image"], strand_scene["mask"], strand_scene["outside"]
    alpha, fg = strand_scene["alpha"], strand_scene["fg"]
    adaptive = edges.matte(image, m, method="closed_form")  # the default reach, 40 px
    fixed = edges.matte(image, m, reach=8, method="closed_form")
    beyond = (alpha > 0.1) & (outside > 8)
    assert beyond.sum() > 1000
    assert not fixed[beyond].any()  # the fixed band cuts every strand at 8 px
    adaptive_error = np.abs(adaptive - alpha)[beyond].mean()
    fixed_error = np.abs(fixed - alpha)[beyond].mean()
    assert adaptive_error < 0.2 * fixed_error, (adaptive_error, fixed_error)
    # and the composite onto a new background, decontaminated, in the band around the truth
    band = grow(m | (alpha >= 1 / 255), 8) & ~shrink(m, 8)
    back = np.full(image.shape, (30, 60, 200), np.uint8)
    truth = alpha[..., None] * fg + (1 - alpha[..., None]) * back

    def error(a):
        out = edges.blend(edges.estimate_foreground(image, a), back, a)
        return np.abs(out - truth)[band].mean()

    assert error(adaptive) < 0.5 * error(fixed), (error(adaptive), error(fixed))


def test_strands_colours_pull_their_alpha_up_to_the_truth(strand_scene, monkeypatch):
    """Over the striped background the Laplacian alone (the matte before the pulls) gives the
    strands beyond the fixed band, and the background between them, an alpha further from the
    truth than with the pulls towards the alpha that the strands' colours say
    (edges.STRAND_PULL) and towards 0 where no line is (edges.STRAND_GAP_PULL)."""
    image, m, outside = strand_scene["image"], strand_scene["mask"], strand_scene["outside"]
    alpha = strand_scene["alpha"]
    band = edges.strand_band(image, m)
    sampled, weight = edges._strand_alpha(image, m, band)
    gaps = weight == edges.STRAND_GAP_PULL
    lines = (weight > 0) & ~gaps
    assert not weight[~band].any() and lines.any() and gaps.any()
    assert weight[lines].max() <= edges.STRAND_PULL and not sampled[gaps].any()
    assert np.abs(sampled - alpha)[lines].mean() < 0.1  # the colours' own alpha
    assert (alpha[gaps] < 0.05).mean() > 0.9  # no line: the background
    pulled = edges.matte(image, m, method="closed_form")
    monkeypatch.setattr(edges, "STRAND_PULL", 0.0)
    monkeypatch.setattr(edges, "STRAND_GAP_PULL", 0.0)
    laplacian_only = edges.matte(image, m, method="closed_form")
    cores, between = (alpha > 0.3) & (outside > 8), (alpha == 0) & (outside <= 40)
    for region in (cores, between):
        pulled_error = np.abs(pulled - alpha)[region].mean()
        alone_error = np.abs(laplacian_only - alpha)[region].mean()
        assert pulled_error < 0.7 * alone_error, (pulled_error, alone_error)


def test_strands_over_a_textured_background_leak_less_alpha_into_it(monkeypatch):
    """The strand scene over a background with 150 thin lines of its own, a fifth to three
    fifths of the way to the subject's colours: the Laplacian leaks alpha into them; setting the
    strands' band's alpha under edges.STRAND_FLOOR to 0 away from a strand's core takes the leak
    out and keeps the strands' soft sides, so the composite is closer to the truth. Fails with
    STRAND_FLOOR 0 (no floor) and with STRAND_CORE 1 (the soft sides cut too)."""
    alpha, fg, bg, m = _strand_truth()
    rng = np.random.default_rng(2)
    for _ in range(150):
        p = rng.uniform(0, 199, 2)
        x, y = int(p[0]), int(p[1])
        colour = bg[y, x] + rng.uniform(0.2, 0.6) * (fg[y, x] - bg[y, x])
        cv2.line(bg, (x, y), tuple(map(int, p + rng.uniform(-25, 25, 2))), colour.tolist(), 1)
    image = np.clip(np.rint(alpha[..., None] * (fg - bg) + bg), 0, 255).astype(np.uint8)
    back = np.full(image.shape, (30, 60, 200), np.uint8)
    truth = alpha[..., None] * fg + (1 - alpha[..., None]) * back
    band = grow(m | (alpha >= 1 / 255), 8) & ~shrink(m, 8)

    def error(**constants):
        for name, value in constants.items():
            monkeypatch.setattr(edges, name, value)
        a = edges.matte(image, m, method="closed_form")
        out = edges.blend(edges.estimate_foreground(image, a), back, a)
        return np.abs(out - truth)[band].mean()

    floor, floored = edges.STRAND_FLOOR, error()
    assert floored < 0.9 * error(STRAND_FLOOR=0.0), floored
    assert floored < 0.9 * error(STRAND_FLOOR=floor, STRAND_CORE=1.0), floored


def test_strands_leave_the_kept_pixels_bit_identical(strand_scene):
    from sdsam_nb.edges import kept_width, paste, subject_alpha

    image, m = strand_scene["image"], strand_scene["mask"]
    alpha, colours = subject_alpha(Image.fromarray(image), m, "matte", feather=3)
    assert (alpha[~m] > 0.5).sum() > 500  # the strands are pasted along with the subject
    kept = shrink(m, kept_width(m, "matte", 3))
    assert kept_width(m, "matte", 3) == edges.DEFAULT_BAND and kept.any()
    assert np.all(alpha[kept] == 1.0) and np.array_equal(colours[kept], image[kept])
    back = np.zeros_like(image)
    assert np.array_equal(paste(back, colours, alpha.astype(np.float32))[kept], image[kept])


def test_matte_beats_the_feathered_mask_in_the_band(scene, estimated):
    alpha, m = scene["alpha"], scene["mask"]
    band = edges.trimap(m, 8) == 128
    matte_error = np.abs(estimated - alpha)[band].mean()
    feather_error = np.abs(feather(m, 3) - alpha)[band].mean()
    assert matte_error < 0.5 * feather_error, (matte_error, feather_error)


def test_decontaminated_colours_are_closer_to_the_subject(scene, estimated):
    image, fg = scene["image"], scene["fg"]
    out = edges.estimate_foreground(image, estimated)
    assert out.dtype == np.uint8 and out.shape == image.shape
    sure = (estimated == 1.0) | (estimated == 0.0)
    assert np.array_equal(out[sure], image[sure])  # only the soft band is recomputed
    see_through = (scene["alpha"] > 0.05) & (scene["alpha"] < 0.95) & (estimated > 0.05)
    raw = np.abs(image[see_through] - fg[see_through]).mean()
    ours = np.abs(out[see_through] - fg[see_through]).mean()
    assert ours < 0.6 * raw, (ours, raw)


def test_estimate_foreground_keeps_a_hard_alpha_picture(scene):
    hard = scene["mask"].astype(np.float32)
    assert np.array_equal(edges.estimate_foreground(scene["image"], hard), scene["image"])


def test_blend_is_the_compositing_equation():
    rng = np.random.default_rng(1)
    f = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    a = rng.random((32, 48)).astype(np.float32)
    a[:4], a[-4:] = 1.0, 0.0
    s = (0.5 * rng.random((32, 48))).astype(np.float32)
    a64, s64 = a.astype(np.float64)[..., None], s.astype(np.float64)[..., None]

    out = edges.blend(f, b, a)
    assert out.dtype == np.uint8 and out.shape == f.shape
    assert np.array_equal(out, np.rint(a64 * f + (1 - a64) * b).astype(np.uint8))
    assert np.array_equal(out[:4], f[:4]) and np.array_equal(out[-4:], b[-4:])
    shaded = edges.blend(f, b, a, shadow=s)
    expected = np.rint(a64 * f + (1 - a64) * (b * (1 - s64))).astype(np.uint8)
    assert np.array_equal(shaded, expected)


def test_contact_shadow_lies_under_the_subject_and_never_on_it():
    alpha = np.zeros((120, 100), np.float32)
    alpha[20:80, 30:70] = 1.0
    alpha[80, 30:70] = 0.5  # a soft bottom edge
    shadow = edges.contact_shadow(alpha, opacity=0.4)
    assert shadow.dtype == np.float32 and shadow.shape == alpha.shape
    assert np.all(shadow[alpha == 1.0] == 0.0)
    assert shadow.max() <= 0.4 and shadow.min() >= 0.0
    assert shadow[81:90, 35:65].mean() > 0.1  # just below the feet
    assert shadow[:15].max() < 1e-3  # nothing above the head
    right = edges.contact_shadow(alpha, direction=(1, 0), distance=6, softness=2)
    assert right[40:60, 71:78].mean() > 0.1 and right[40:60, 22:29].max() < 1e-3
    assert not edges.contact_shadow(np.zeros((10, 10), np.float32)).any()


def test_auto_is_vitmatte_on_a_gpu_and_closed_form_on_the_cpu(monkeypatch):
    assert edges.pick_method("auto", "cpu") == "closed_form"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with one GPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert edges.pick_method("auto", "cuda") == "vitmatte"
    assert edges.pick_method("vitmatte", "cpu") == "vitmatte"


def test_tiny_vitmatte_loads_once_and_obeys_the_trimap(scene):
    from sdsam_nb.models import cache
    from sdsam_nb.models.matting import VitMatte, load_vitmatte
    from sdsam_nb.models.tiny import VITMATTE_RECIPE

    net = load_vitmatte("tiny", device="cpu")
    assert isinstance(net, VitMatte) and net.model.config.model_type == "vitmatte"
    assert load_vitmatte("tiny", device="cpu") is net
    folder = cache.cache_dir() / "tiny" / VITMATTE_RECIPE
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= {
        p.name for p in folder.iterdir()
    }

    m = scene["mask"]
    alpha = edges.matte(scene["image"], m, band=6, method="vitmatte", model="tiny", device="cpu")
    assert alpha.dtype == np.float32
    assert np.all(alpha[shrink(m, 6)] == 1.0) and np.all(alpha[~grow(m, 6)] == 0.0)
    assert 0.0 <= alpha.min() and alpha.max() <= 1.0

    class Spy(VitMatte):  # the loaded model, recording what matte() gives it and gets back
        def __call__(self, image, trimap):
            self.seen = (image, trimap, super().__call__(image, trimap))
            return self.seen[2]

    spy = Spy(net.processor, net.model, "spy")
    again = edges.matte(scene["image"], m, band=6, method="vitmatte", model=spy)
    assert np.array_equal(again, alpha)
    image, tri, raw = spy.seen
    assert image.shape[:2] == tri.shape == raw.shape and tri.size < m.size  # a crop
    band = tri == 128
    assert np.sort(alpha[edges.trimap(m, 6) == 128]).tolist() == np.sort(raw[band]).tolist()
    assert raw[band].std() > 1e-4  # the tiny model's alphas vary: the values are its own


def _bad_cases(scene):
    image, m = scene["image"], scene["mask"]
    a = m.astype(np.float32)
    empty, full = np.zeros_like(m), np.ones_like(m)
    return {
        "band": [
            lambda: edges.matte(image, m, band=0),
            lambda: edges.matte(image, m, band=-2),
            lambda: edges.matte(image, m, band="8"),
            lambda: edges.matte(image, m, band=None),
            lambda: edges.trimap(m, float("nan")),
            lambda: edges.trimap(m, 60),  # wider than the subject
            lambda: edges.trimap(m, 200),
        ],
        "mask": [
            lambda: edges.matte(image, empty),
            lambda: edges.matte(image, full),
            lambda: edges.matte(image, m[:100]),
            lambda: edges.trimap(empty, 4),
            lambda: edges.strand_band(image, empty),
        ],
        "reach": [
            lambda: edges.matte(image, m, reach=-1),
            lambda: edges.matte(image, m, reach="40"),
            lambda: edges.strand_band(image, m, reach=float("nan")),
        ],
        "strands": [
            lambda: edges.trimap(m, 6, strands=m),  # inside the mask
            lambda: edges.trimap(m, 6, strands=np.zeros((10, 10), bool)),
            lambda: edges.trimap(m, 6, strands=a),
        ],
        "method": [lambda: edges.matte(image, m, method="levin")],
        "alpha": [
            lambda: edges.estimate_foreground(image, a[:100]),
            lambda: edges.estimate_foreground(image, a * 2),
            lambda: edges.estimate_foreground(image, np.full_like(a, np.nan)),
            lambda: edges.blend(image, image, a - 0.5),
            lambda: edges.blend(image, image, (a * 255).astype(np.uint8)),
            lambda: edges.contact_shadow(a[..., None]),
        ],
        "shadow": [
            lambda: edges.blend(image, image, a, shadow=a[:50]),
            lambda: edges.blend(image, image, a, shadow=a + 1),
        ],
        "background": [lambda: edges.blend(image, image[:100], a)],
        "direction": [
            lambda: edges.contact_shadow(a, direction=(0, 0)),
            lambda: edges.contact_shadow(a, direction=(1, 2, 3)),
            lambda: edges.contact_shadow(a, direction="down"),
        ],
        "softness": [lambda: edges.contact_shadow(a, softness=-1)],
        "squash": [lambda: edges.contact_shadow(a, squash=0)],
        "opacity": [lambda: edges.contact_shadow(a, opacity=1.5)],
        "distance": [lambda: edges.contact_shadow(a, distance=float("inf"))],
    }


def test_bad_input_raises_one_line_value_error_naming_the_argument(scene):
    for name, calls in _bad_cases(scene).items():
        for k, call in enumerate(calls):
            with pytest.raises(ValueError) as info:
                call()
            message = str(info.value)
            assert name in message and "\n" not in message, (name, k, message)


def test_a_soft_edge_leaves_torch_on_its_thread_count():
    """pymatting's import starts numba's OpenMP threads, which set the count torch shares to
    every core: a batch on one torch thread computed its later items on two (their pictures
    depended on their place in the batch). In a fresh process, since pymatting may be imported
    here already."""
    code = (
        "import numpy as np, torch\n"
        "from sdsam_nb import edges\n"
        "a = np.zeros((24, 24), np.float32); a[6:18, 6:18] = 1; a[5, 6:18] = 0.5\n"
        "edges.estimate_foreground(np.full((24, 24, 3), 90, np.uint8), a)\n"
        "print(torch.get_num_threads())\n"
    )
    assert python_says(code, OMP_NUM_THREADS="1") == ["1"]
