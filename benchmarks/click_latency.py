"""Click latency: a click with the cached image embedding against recomputing it per click.

* cached: ``sdsam_nb.segment.clicks.ClickSegmenter(predictor, image)`` runs SAM's image encoder
  once; each ``add_point`` runs only the prompt encoder and mask decoder. Timed per click around
  ``add_point`` (what the user waits for: prediction, mask copy, history), with SAM's own
  part (``last_latency_s``) reported too. Clicks come in sessions of 5 (``reset()`` between
  them keeps the embedding), so the prompt grows as in real use.
* naive: what an app without the cache does: ``predictor.set_image(image)`` and
  ``predictor.predict(...)`` for every click, with the same prompts (all points so far, the
  previous best logits as ``mask_input``).

Full size: ``vit_b`` on the CPU, ``vit_h`` on a GPU, random weights
(``build_sam_vit_*(checkpoint=None)``, no download), a 512x512 picture (SD's output size;
SAM resizes it to 1024). Repetitions: CPU 3 naive and 20 cached clicks (each naive click is
a full image-encoder pass; only the decoder is warmed up, and the naive clicks run first),
GPU 10 and 50 after a warm-up of both. Targets: median ratio ≥ 50 on the CPU; median cached
click ≤ 10 ms on a GPU. ``--quick``: the tiny SAM, 2 naive and 5 cached clicks.
"""

from __future__ import annotations

import time

import numpy as np
from PIL import Image

from .harness import Context, Section, median, p90

NAME = "click_latency"
TITLE = "Click latency: cached SAM embedding vs recomputed per click"
SESSION = 5  # clicks per session before reset()
TARGET_RATIO_CPU = 50
TARGET_CLICK_GPU_MS = 10


def test_picture(size: int = 512) -> Image.Image:
    """A ``size`` x ``size`` RGB picture: a red disc (the subject) on a gradient."""
    yy, xx = np.mgrid[0:size, 0:size]
    img = np.zeros((size, size, 3), np.uint8)
    img[..., 1] = xx * 255 // size
    img[..., 2] = yy * 255 // size
    img[(xx - size / 2) ** 2 + (yy - size / 2) ** 2 < (size / 4) ** 2] = (220, 30, 30)
    return Image.fromarray(img)


def clicks(n: int, size: int = 512, seed: int = 0) -> list[tuple[float, float, bool]]:
    """``n`` clicks ``(x, y, positive)``: sessions of :data:`SESSION`, each starting with an
    include click on the subject, then a mix of include (inside) and exclude (outside)."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        positive = k % SESSION in (0, 1, 3)
        r = rng.uniform(0, size / 5) if positive else rng.uniform(size / 3, size / 2.2)
        a = rng.uniform(0, 2 * np.pi)
        x = float(np.clip(size / 2 + r * np.cos(a), 0, size - 1))
        y = float(np.clip(size / 2 + r * np.sin(a), 0, size - 1))
        out.append((x, y, positive))
    return out


def _predictor(ctx: Context):
    from segment_anything import SamPredictor

    from .fullsize import build_sam

    if ctx.quick:
        return "tiny", SamPredictor(build_sam("tiny", ctx.device))
    model_type = "vit_h" if ctx.cuda else "vit_b"
    return model_type, SamPredictor(build_sam(model_type, ctx.device))


def cached_clicks(predictor, image, points, ctx: Context) -> dict:
    """Time ``ClickSegmenter``: the embedding once, then each click."""
    from sdsam_nb.segment.clicks import ClickSegmenter

    ctx.sync()
    start = time.perf_counter()
    seg = ClickSegmenter(predictor, image)
    ctx.sync()
    embed_s = time.perf_counter() - start
    wall, sam = [], []
    for k, (x, y, positive) in enumerate(points):
        if k and k % SESSION == 0:
            seg.reset()
        start = time.perf_counter()
        seg.add_point(x, y, positive)  # returns a numpy mask: the GPU work is done
        wall.append(time.perf_counter() - start)
        sam.append(seg.last_latency_s)
    return {"embedding_s": embed_s, "click_s": wall, "predict_s": sam}


def naive_clicks(predictor, image, points, ctx: Context) -> dict:
    """Time ``set_image`` + ``predict`` per click, prompts as :func:`cached_clicks` makes them."""
    rgb = np.asarray(image)
    wall = []
    coords, labels, logits = [], [], None
    for k, (x, y, positive) in enumerate(points):
        if k % SESSION == 0:
            coords, labels, logits = [], [], None
        coords.append((x, y))
        labels.append(int(positive))
        ctx.sync()
        start = time.perf_counter()
        predictor.set_image(rgb)
        masks, scores, low_res = predictor.predict(
            point_coords=np.array(coords, dtype=np.float64),
            point_labels=np.array(labels, dtype=np.int64),
            mask_input=logits,
            multimask_output=len(coords) == 1,
        )
        ctx.sync()
        wall.append(time.perf_counter() - start)
        logits = low_res[int(np.argmax(scores))][None]
    return {"click_s": wall}


def warm_up(predictor, image, ctx: Context) -> None:
    """Warm the decoder up (kernels, allocator) on a stand-in embedding; on a GPU the image
    encoder too. On the CPU the encoder is not warmed up: that would cost a naive click."""
    if ctx.cuda:
        cached_clicks(predictor, image, clicks(3, seed=1), ctx)
        naive_clicks(predictor, image, clicks(1, seed=1), ctx)
        return
    import torch

    model = predictor.model
    side = model.image_encoder.img_size
    h, w = image.height, image.width
    predictor.reset_image()
    predictor.original_size = (h, w)
    predictor.input_size = tuple(predictor.transform.get_preprocess_shape(h, w, side))
    dim = model.prompt_encoder.embed_dim
    grid = model.prompt_encoder.image_embedding_size
    predictor.features = torch.zeros(1, dim, *grid, device=predictor.device)
    predictor.is_image_set = True
    for x, y, positive in clicks(2, seed=1):
        predictor.predict(point_coords=np.array([[x, y]]), point_labels=np.array([int(positive)]))
    predictor.reset_image()


def run(ctx: Context) -> Section:
    sec = Section(NAME, TITLE)
    model_type, predictor = _predictor(ctx)
    image = test_picture(512)
    if ctx.quick:
        n_naive, n_cached = 2, 5
    elif ctx.cuda:
        n_naive, n_cached = 10, 50
    else:
        n_naive, n_cached = 3, 20
    warm_up(predictor, image, ctx)
    # Naive first: its first click also warms the image encoder up for the cached path.
    ctx.log(f"{NAME}: {n_naive} naive clicks on {model_type} (embedding recomputed each time)")
    naive = naive_clicks(predictor, image, clicks(n_naive), ctx)
    ctx.log(f"{NAME}: {n_cached} cached clicks on {model_type}")
    cached = cached_clicks(predictor, image, clicks(n_cached), ctx)
    sec.extra.update(model_type=model_type, cached=cached, naive=naive)

    c_med, n_med = median(cached["click_s"]), median(naive["click_s"])
    ratio = n_med / c_med
    sec.add("embedding, once per image", cached["embedding_s"], "s")
    judge = not ctx.quick
    sec.add(
        f"cached click, median of {n_cached}",
        c_med,
        "s",
        target=f"≤ {TARGET_CLICK_GPU_MS} ms" if ctx.cuda else "",
        met=(c_med * 1000 <= TARGET_CLICK_GPU_MS) if (judge and ctx.cuda) else None,
    )
    sec.add("cached click, p90", p90(cached["click_s"]), "s")
    sec.add("cached click, SAM predict part, median", median(cached["predict_s"]), "s")
    sec.add(f"naive click (set_image + predict), median of {n_naive}", n_med, "s")
    sec.add("naive click, p90", p90(naive["click_s"]), "s")
    sec.add(
        "ratio naive / cached (medians)",
        ratio,
        "x",
        target="" if ctx.cuda else f"≥ {TARGET_RATIO_CPU}",
        met=(ratio >= TARGET_RATIO_CPU) if (judge and not ctx.cuda) else None,
    )
    sec.notes.append(
        f"{model_type} with random weights on {ctx.device}, 512x512 picture, sessions of "
        f"{SESSION} clicks; 'cached' = ClickSegmenter.add_point wall time"
    )
    return sec
