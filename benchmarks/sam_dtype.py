"""SAM dtype: segment_anything's image encoder in float32 against bfloat16 on this CPU.

What :func:`sdsam_nb.models.devices.pick_embed_dtype` rests on; what is measured and the
targets: README.md. The full-size ``vit_b`` (random weights) embeds a photograph in both dtypes
(``sdsam_nb.models.sam.Predictor``, as ``load_sam`` makes it), in turns (:func:`harness.in_turns`)
after a warm-up of each, in a fresh process that flushes subnormal floats to zero. A CPU
measurement; ``--quick``: the tiny SAM.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from . import harness as h

NAME = "sam_dtype"
TITLE = "SAM dtype: the image encoder in float32 vs bfloat16 autocast (speed, closeness)"
TARGET_IOU = 0.95  # the same clicks give (nearly) the same mask from either embedding
CPU_SETTINGS = {"reps": 3, "sam": "vit_b"}
QUICK_SETTINGS = {"reps": 1, "sam": "tiny"}
SAM_CLICKS = 8  # random include clicks, each decoded from both embeddings


def measure(cfg: dict, quick: bool = False) -> dict:
    """SAM's embedding of a photograph in float32 and bfloat16 (autocast), timed in turns
    after a warm-up of each; the embeddings' relative difference; the IoU of the best
    candidate mask of :data:`SAM_CLICKS` random clicks decoded from each."""
    from skimage import data

    from sdsam_nb.models.devices import pick_embed_dtype
    from sdsam_nb.models.sam import Predictor

    from .fullsize import build_sam

    sam, picture = build_sam(cfg["sam"], "cpu"), data.astronaut()
    predictors = {name: Predictor(sam, dtype=getattr(torch, name)) for name in h.DTYPES}
    for p in predictors.values():  # warm-up: a first call at a new dtype is slower
        p.set_image(picture)
    features = {}

    def embed(name: str):
        def call():
            predictors[name].set_image(picture)
            features[name] = predictors[name].features

        return call

    ctx = h.Context(device=torch.device("cpu"), quick=quick)
    turns = h.in_turns(ctx, {"SAM embedding": embed}, cfg["reps"])
    a, b = (features[name] for name in h.DTYPES)
    rng, height, width = np.random.default_rng(0), *picture.shape[:2]
    ious = []
    for _ in range(SAM_CLICKS):
        point = rng.uniform((0.1 * width, 0.1 * height), (0.9 * width, 0.9 * height), size=(1, 2))
        masks = []
        for p in predictors.values():
            m, scores, _ = p.predict(point_coords=point, point_labels=np.ones(1))
            masks.append(m[int(np.argmax(scores))])
        ious.append(h.iou(*masks))
    pick = str(pick_embed_dtype(torch.device("cpu"))).removeprefix("torch.")
    return {**turns, "relative": float((b - a).norm() / a.norm()), "ious": ious, "pick": pick}


def report(sec: h.Section, ctx: h.Context, cfg: dict, m: dict) -> None:
    """The rows and notes of :func:`measure`'s result ``m``."""
    names = ("float32", "bfloat16 (autocast)")
    h.dtype_rows(sec, ctx, m["seconds"], "SAM embedding", f"SAM {cfg['sam']} embedding", names)
    sec.add("SAM embedding: relative difference, bfloat16 against float32", m["relative"], "")
    worst, what = min(m["ious"]), "SAM masks: IoU of bfloat16's against float32's, worst click"
    note = f"median {np.median(m['ious']):.4f} over {len(m['ious'])} random clicks"
    sec.add(what, worst, "", note=note, **h.judged(worst, "≥", TARGET_IOU, ctx))
    sec.notes.append(
        f"SAM: segment_anything {cfg['sam']}"
        + (" (the kit's tiny one)" if cfg["sam"] == "tiny" else ", random weights")
        + ", fp32 weights; the image encoder under torch.autocast(bfloat16) or not "
        "(sdsam_nb.models.sam.Predictor, as load_sam makes it), the embedding kept in fp32; "
        f"scikit-image's astronaut (512x512 photograph), {cfg['reps']} turn(s) after a warm-up "
        f"of each; masks: the best of 3 candidates for one include click; pick_embed_dtype(cpu) "
        f"gives {m['pick']} here" + h.busy(m.get("other_cpu_share"))
    )


def run(ctx: h.Context) -> h.Section:
    return h.dtype_benchmark(ctx, sys.modules[__name__], "SAM runs in fp32", 1800)
