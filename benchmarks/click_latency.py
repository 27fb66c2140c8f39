"""Click latency: a click with the cached image embedding against recomputing it per click.

cached: ``ClickSegmenter(predictor, image)`` runs SAM's image encoder once; each ``add_point``
(timed: what the user waits for) runs only the prompt encoder and mask decoder. naive: what an
app without the cache does, ``set_image`` + ``predict`` for every click with the same prompts
(all points so far, the previous best logits as ``mask_input``). Models, repetitions and
targets: README.md.
"""

from __future__ import annotations

import numpy as np

from . import harness as h

NAME = "click_latency"
TITLE = "Click latency: cached SAM embedding vs recomputed per click"
SIZE = 512  # the square test picture's side
TARGET_RATIO_CPU = 50
TARGET_CLICK_GPU_MS = 10


def cached_clicks(predictor, image, points, ctx: h.Context) -> dict:
    """Time ``ClickSegmenter``: the embedding once, then each click."""
    from sdsam_nb.segment.clicks import ClickSegmenter

    times: dict[str, float] = {}
    with ctx.timing(times, "embedding_s"):
        seg = ClickSegmenter(predictor, image)
    wall, sam = h.session_clicks(seg, points)
    return {**times, "click_s": wall, "predict_s": sam}


def naive_clicks(predictor, image, points, ctx: h.Context) -> dict:
    """Time ``set_image`` + ``predict`` per click, prompts as :func:`cached_clicks` makes them."""
    rgb = np.asarray(image)
    times: dict[str, float] = {}
    wall = []
    for k, (x, y, positive) in enumerate(points):
        if k % h.SESSION == 0:
            coords, labels, logits = [], [], None
        coords.append((x, y))
        labels.append(int(positive))
        with ctx.timing(times, "click"):
            predictor.set_image(rgb)
            masks, scores, low_res = predictor.predict(
                point_coords=np.array(coords, dtype=np.float64),
                point_labels=np.array(labels, dtype=np.int64),
                mask_input=logits,
                multimask_output=len(coords) == 1,
            )
        wall.append(times.pop("click"))
        logits = low_res[int(np.argmax(scores))][None]
    return {"click_s": wall}


def warm_up(predictor, image, ctx: h.Context) -> None:
    """Warm the decoder up (kernels, allocator) on a stand-in embedding; on a GPU the image
    encoder too. On the CPU the encoder is not warmed up: that would cost a naive click."""
    if ctx.cuda:
        cached_clicks(predictor, image, h.click_plan(3, SIZE, SIZE, seed=1), ctx)
        naive_clicks(predictor, image, h.click_plan(1, SIZE, SIZE, seed=1), ctx)
        return
    import torch

    model = predictor.model
    predictor.reset_image()
    predictor.original_size = (image.height, image.width)
    side = model.image_encoder.img_size
    shape = predictor.transform.get_preprocess_shape(image.height, image.width, side)
    predictor.input_size = tuple(shape)
    grid = model.prompt_encoder.image_embedding_size
    dim = model.prompt_encoder.embed_dim
    predictor.features = torch.zeros(1, dim, *grid, device=predictor.device)
    predictor.is_image_set = True
    for x, y, positive in h.click_plan(2, SIZE, SIZE, seed=1):
        predictor.predict(point_coords=np.array([[x, y]]), point_labels=np.array([int(positive)]))
    predictor.reset_image()


def run(ctx: h.Context) -> h.Section:
    from segment_anything import SamPredictor

    from .fullsize import build_sam

    sec = h.Section(NAME, TITLE)
    model_type = "tiny" if ctx.quick else "vit_h" if ctx.cuda else "vit_b"
    predictor = SamPredictor(build_sam(model_type, ctx.device))
    image = h.disc_picture(SIZE, SIZE)
    n_naive, n_cached = (2, 5) if ctx.quick else (10, 50) if ctx.cuda else (3, 20)
    warm_up(predictor, image, ctx)
    # Naive first: its first click also warms the image encoder up for the cached path.
    ctx.log(f"{NAME}: {n_naive} naive clicks on {model_type} (embedding recomputed each time)")
    naive = naive_clicks(predictor, image, h.click_plan(n_naive, SIZE, SIZE), ctx)
    ctx.log(f"{NAME}: {n_cached} cached clicks on {model_type}")
    cached = cached_clicks(predictor, image, h.click_plan(n_cached, SIZE, SIZE), ctx)
    sec.extra.update(model_type=model_type, cached=cached, naive=naive)

    c_med, n_med = np.median(cached["click_s"]), np.median(naive["click_s"])
    gpu_target = h.judged(
        c_med * 1000, "≤", TARGET_CLICK_GPU_MS, ctx, f"≤ {TARGET_CLICK_GPU_MS} ms"
    )
    sec.add("embedding, once per image", cached["embedding_s"], "s")
    sec.add(f"cached click, median of {n_cached}", c_med, "s", **(gpu_target if ctx.cuda else {}))
    sec.add("cached click, p90", np.percentile(cached["click_s"], 90), "s")
    sec.add("cached click, SAM predict part, median", np.median(cached["predict_s"]), "s")
    sec.add(f"naive click (set_image + predict), median of {n_naive}", n_med, "s")
    sec.add("naive click, p90", np.percentile(naive["click_s"], 90), "s")
    ratio = n_med / c_med
    cpu_target = {} if ctx.cuda else h.judged(ratio, "≥", TARGET_RATIO_CPU, ctx)
    sec.add("ratio naive / cached (medians)", ratio, "x", **cpu_target)
    sec.notes.append(
        f"{model_type} with random weights on {ctx.device}, {SIZE}x{SIZE} picture, sessions of "
        f"{h.SESSION} clicks; 'cached' = ClickSegmenter.add_point wall time"
    )
    return sec
