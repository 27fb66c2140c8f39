"""Soft edges on photographs: the subject re-composited through today's feathered SAM mask
against :func:`sdsam_nb.edges.matte` and :func:`sdsam_nb.edges.estimate_foreground`.

The ground truth is made, not guessed: a subject with a known soft alpha (:data:`SUBJECTS`)
and known colours ``F`` (Chelsea the cat's fur, ``skimage.data``) is composited over photograph
A, ``I = alpha * F + (1 - alpha) * A``, and the alpha binarised at 0.5 (a perfect SAM click).
The subject is cut out of ``I`` through that mask and put onto photograph B three ways: (a) the
raw pixels through ``feather(mask, 3)``; (b) the raw pixels through ``edges.matte(I, mask,
band=8)``; (c) that alpha with colours from ``edges.estimate_foreground`` through
``edges.blend``. Each is compared with ``alpha * F + (1 - alpha) * B`` in the edge band (the
unknown band of ``edges.trimap``): mean absolute error over those pixels and channels, 0..255.
Plain closed-form matting (pymatting's ``estimate_alpha_cf``, no pull towards the mask: what
``edges.PRIOR_WEIGHT`` changes) is measured the same way, (b0) and (c0); ViTMatte too on a GPU
when the Hugging Face cache holds it (``--quick``: the tiny one, numbers meaningless). Pairs
(A -> B): coffee -> astronaut, astronaut -> rocket (``PRIOR_WEIGHT`` was chosen on another).
Seconds per megapixel follow one warm-up call (pymatting compiles its numba code once, ~40 s).
"""

from __future__ import annotations

import numpy as np

from .harness import Context, Section, judged

NAME = "edges"
TITLE = "Soft edges: matte + decontamination against the feathered SAM mask, on photographs"
BAND = 8
FEATHER = 3
SIZE, QUICK_SIZE = 512, 128
SUBJECT = "chelsea"
PAIRS = (("coffee", "astronaut"), ("astronaut", "rocket"))
SEED = 0


def photograph(name: str, size: int) -> np.ndarray:
    """``skimage.data.<name>()`` as ``size x size x 3 uint8``: centre square crop, area resize."""
    import cv2
    from skimage import data

    picture = getattr(data, name)()[..., :3]
    h, w = picture.shape[:2]
    side = min(h, w)
    y, x = (h - side) // 2, (w - side) // 2
    square = np.ascontiguousarray(picture[y : y + side, x : x + side])
    return cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA)


def _polar(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    c = size / 2
    return np.hypot(xx - c, yy - c), np.arctan2(yy - c, xx - c)


def soft_alpha(size: int) -> np.ndarray:
    """``HxW float64``: a disc of radius ``0.3 * size`` wobbling by 8% (5 lobes) with a linear
    6-px soft edge, as defocus or motion blur make."""
    r, theta = _polar(size)
    r0 = 0.3 * size * (1 + 0.08 * np.sin(5 * theta))
    return np.clip((r0 - r) / 6.0 + 0.5, 0.0, 1.0)


def hair_alpha(size: int, seed: int = SEED) -> np.ndarray:
    """``HxW float64``: a disc of radius ``0.28 * size`` wobbling by 6% (3 lobes), a 1-px
    anti-aliased edge and ``0.6 * size`` strands, each starting 3 px inside the edge, 4-12 px
    long, slightly bent, 0.5-1 px wide with a core alpha of 0.6-1 (drawn anti-aliased at 4x and
    area-averaged, so that thin strands cover pixels partially)."""
    import cv2

    rng = np.random.default_rng(seed)
    r, theta = _polar(size)

    def edge(t):
        return 0.28 * size * (1 + 0.06 * np.sin(3 * t + 1))

    body = np.clip(edge(theta) - r + 0.5, 0.0, 1.0)
    ss, c = 4, size / 2
    canvas = np.zeros((size * ss, size * ss), np.float32)
    for _ in range(int(0.6 * size)):
        t = rng.uniform(0, 2 * np.pi)
        start, length, bend = edge(t) - 3, rng.uniform(4, 12), rng.uniform(-0.4, 0.4)
        u = np.linspace(0, 1, 8)
        angle = t + bend * u * length / start
        radius = start + u * length
        pts = np.stack([c + radius * np.cos(angle), c + radius * np.sin(angle)], -1) * ss
        width = int(rng.integers(2, 5))  # 2-4 px at 4x: 0.5-1 px
        value = float(rng.uniform(0.6, 1.0))
        cv2.polylines(canvas, [np.int32(np.round(pts))], False, value, width, cv2.LINE_AA)
    strands = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
    return np.maximum(body, np.clip(strands, 0.0, 1.0))


SUBJECTS = {"soft": soft_alpha, "hair": hair_alpha}


def _plain_closed_form(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """pymatting's ``estimate_alpha_cf`` on the same trimap, without the mask prior."""
    from pymatting import estimate_alpha_cf

    from sdsam_nb import edges

    tri = edges.trimap(mask, BAND)
    alpha = estimate_alpha_cf(image / 255.0, tri / 255.0)
    return np.where(tri == edges.UNKNOWN, np.clip(alpha, 0, 1), tri / 255.0).astype(np.float32)


def _case(ctx: Context, alpha, fg, a_photo, b_photo, matters) -> dict:
    """Errors (and seconds) of each way for one subject over one pair of photographs."""
    from sdsam_nb import edges
    from sdsam_nb.masks import feather

    a3 = alpha[..., None]
    seen = np.clip(np.rint(a3 * fg + (1 - a3) * a_photo), 0, 255).astype(np.uint8)
    truth = a3 * fg + (1 - a3) * b_photo
    mask = alpha > 0.5
    band = edges.trimap(mask, BAND) == edges.UNKNOWN
    b_uint8 = b_photo.astype(np.uint8)

    def error(composite) -> float:
        return float(np.abs(np.asarray(composite, np.float64) - truth)[band].mean())

    f = feather(mask, FEATHER)[..., None]
    out = {"a": error(f * seen + (1 - f) * b_photo), "band_pixels": int(band.sum())}
    for key, matter in matters.items():
        with ctx.timing(out, f"matte_s{key}"):
            est = matter(seen, mask)
        with ctx.timing(out, f"fg_s{key}"):
            colours = edges.estimate_foreground(seen, est)
        e3 = est[..., None]
        out[f"b{key}"] = error(e3 * seen + (1 - e3) * b_photo)
        out[f"c{key}"] = error(edges.blend(colours, b_uint8, est))
        out[f"alpha{key}"] = float(np.abs(est - alpha)[band].mean())
    out["alpha_feather"] = float(np.abs(f[..., 0] - alpha)[band].mean())
    return out


def run(ctx: Context) -> Section:
    sec = Section(NAME, TITLE)
    try:
        import pymatting  # noqa: F401  (compiles its numba code on the first import ever)
        import skimage  # noqa: F401
    except ImportError as exc:
        return sec.skip(
            f"needs pymatting and scikit-image ({exc}); pip install pymatting scikit-image"
        )
    from sdsam_nb import edges
    from sdsam_nb.models import ModelUnavailableError
    from sdsam_nb.models.matting import DEFAULT_VITMATTE, load_vitmatte

    size = QUICK_SIZE if ctx.quick else SIZE
    subjects = {"hair": SUBJECTS["hair"]} if ctx.quick else SUBJECTS
    pairs = PAIRS[:1] if ctx.quick else PAIRS
    matters = {
        "": lambda img, m: edges.matte(img, m, band=BAND, method="closed_form"),
        "0": _plain_closed_form,
    }
    vit_model = "tiny" if ctx.quick else (DEFAULT_VITMATTE if ctx.cuda else None)
    if vit_model is not None:
        try:
            net = load_vitmatte(vit_model, device=ctx.device)
        except ModelUnavailableError:
            sec.notes.append(f"ViTMatte not measured: {DEFAULT_VITMATTE} is not in the HF cache")
        else:
            matters["v"] = lambda img, m: edges.matte(
                img, m, band=BAND, method="vitmatte", model=net
            )
    fg = photograph(SUBJECT, size).astype(np.float64)
    warm = subjects[next(iter(subjects))](size)
    for matter in matters.values():  # warm-up: first calls allocate and load
        matter(photograph(pairs[0][0], size), warm > 0.5)
    cases = {}
    for subject, make in subjects.items():
        alpha = make(size)
        for a_name, b_name in pairs:
            key = f"{subject}: {a_name} -> {b_name}"
            a_photo = photograph(a_name, size).astype(np.float64)
            b_photo = photograph(b_name, size).astype(np.float64)
            cases[key] = _case(ctx, alpha, fg, a_photo, b_photo, matters)
            ctx.log(f"{NAME}: {key}: {cases[key]}")
    sec.extra.update(cases=cases, size=size, band=BAND, feather=FEATHER)

    def mean(field: str) -> float:
        return float(np.mean([c[field] for c in cases.values()]))

    megapixels = size * size / 1e6
    a, b, c = mean("a"), mean("b"), mean("c")
    sec.add("(a) feather(mask, 3), raw pixels: error in the band", a, note="MAE, 0..255")
    sec.add("(b) matte, raw pixels: error in the band", b, note="MAE, 0..255")
    sec.add("(c) matte + decontamination: error in the band", c, note="MAE, 0..255")
    sec.add("(a)/(c)", a / c, "x", **judged(a / c, "≥", 3, ctx))
    sec.add("(a)/(b)", a / b, "x")
    worst = min(k["a"] / k["c"] for k in cases.values())
    sec.add("(a)/(c), worst case", worst, "x")
    sec.add("alpha error in the band: feather / matte", mean("alpha_feather") / mean("alpha"), "x")
    sec.add("(a)/(c0), plain closed-form (no mask prior)", a / mean("c0"), "x")
    sec.add("matte (closed-form), per megapixel", mean("matte_s") / megapixels, "s")
    sec.add("decontamination, per megapixel", mean("fg_s") / megapixels, "s")
    if "v" in matters:
        tiny = " (tiny, random weights)" if ctx.quick else ""
        sec.add(f"(a)/(c) with ViTMatte{tiny}", a / mean("cv"), "x")
        sec.add(f"ViTMatte{tiny}, per megapixel", mean("matte_sv") / megapixels, "s")
    sec.notes.append(
        ("quick: one subject, the tiny ViTMatte's numbers mean nothing; " if ctx.quick else "")
        + f"{len(subjects)} subject(s) x {len(pairs)} photograph pair(s) at {size}x{size} px, "
        f"band {BAND} px either side of the mask's edge; errors are means over the cases; "
        "(c0) is pymatting's estimate_alpha_cf + the same decontamination"
    )
    return sec
