"""SAM dtype: segment_anything's image encoder in float32 against bfloat16 on this CPU.

What :func:`sdsam_nb.models.devices.pick_embed_dtype` rests on: on a CPU with native bfloat16
``load_sam`` runs SAM's image encoder under ``torch.autocast(bfloat16)`` (fp32 weights, the
embedding kept in fp32). The full-size ``vit_b`` (random weights) embeds a photograph
(scikit-image's astronaut) in both, in turns after a warm-up of each; reported: seconds, the
speed-up, the embeddings' relative difference, and the IoU of the masks that the same clicks
decode from either. In a fresh process that flushes subnormal floats to zero
(:data:`benchmarks.harness.FLUSH_DENORMAL_NOTE`); a CPU measurement. ``--quick``: the tiny SAM.
"""

from __future__ import annotations

import numpy as np
import torch

from .harness import Context, OtherLoad, Section, interleaved, judged, median, run_worker

NAME = "sam_dtype"
TITLE = "SAM dtype: the image encoder in float32 vs bfloat16 autocast (speed, closeness)"
DTYPES = ("float32", "bfloat16")
TARGET_SPEEDUP = 1.1  # as cpu_dtype's: bfloat16 counts as faster from a tenth saved
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

    ctx = Context(device=torch.device("cpu"), quick=quick)
    sam = build_sam(cfg["sam"], "cpu")
    picture = data.astronaut()
    predictors = {name: Predictor(sam, dtype=getattr(torch, name)) for name in DTYPES}
    for p in predictors.values():  # warm-up: a first call at a new dtype is slower
        p.set_image(picture)
    features = {}

    def embed(name: str):
        def call():
            predictors[name].set_image(picture)
            features[name] = predictors[name].features

        return call

    cases = {f"{name} SAM embedding": (lambda name=name: embed(name)) for name in DTYPES}
    with OtherLoad() as load:
        times = interleaved(cases, ctx, cfg["reps"], 0)
    a, b = (features[name] for name in DTYPES)
    relative = float((b - a).norm() / a.norm())
    rng, h, w = np.random.default_rng(0), *picture.shape[:2]
    ious = []
    for _ in range(SAM_CLICKS):
        point = rng.uniform((0.1 * w, 0.1 * h), (0.9 * w, 0.9 * h), size=(1, 2))
        masks = {}
        for name, p in predictors.items():
            m, scores, _ = p.predict(
                point_coords=point, point_labels=np.ones(1), multimask_output=True
            )
            masks[name] = m[int(np.argmax(scores))]
        union = (masks["float32"] | masks["bfloat16"]).sum()
        ious.append(float((masks["float32"] & masks["bfloat16"]).sum() / union) if union else 1.0)
    pick = str(pick_embed_dtype(torch.device("cpu"))).removeprefix("torch.")
    return {
        "seconds": times,
        "relative": relative,
        "ious": ious,
        "pick": pick,
        "threads": torch.get_num_threads(),
        "other_cpu_share": load.share,
    }


def report(ctx: Context, cfg: dict, m: dict) -> Section:
    """The section for :func:`measure`'s result ``m``."""
    sec = Section(NAME, TITLE)
    s32, s16 = (median(m["seconds"][f"{name} SAM embedding"]) for name in DTYPES)
    sec.add(f"SAM {cfg['sam']} embedding: float32", s32, "s")
    sec.add(f"SAM {cfg['sam']} embedding: bfloat16 (autocast)", s16, "s")
    target = judged(s32 / s16, "≥", TARGET_SPEEDUP, ctx)
    sec.add("SAM embedding: bfloat16 speed-up over float32", s32 / s16, "x", **target)
    sec.add("SAM embedding: relative difference, bfloat16 against float32", m["relative"], "")
    worst = min(m["ious"])
    note = f"median {median(m['ious']):.4f} over {len(m['ious'])} random clicks"
    target = judged(worst, "≥", TARGET_IOU, ctx)
    sec.add(
        "SAM masks: IoU of bfloat16's against float32's, worst click",
        worst,
        "",
        note=note,
        **target,
    )
    busy = m.get("other_cpu_share")
    sec.notes.append(
        f"SAM: segment_anything {cfg['sam']}"
        + (" (the kit's tiny one)" if cfg["sam"] == "tiny" else ", random weights")
        + ", fp32 weights; the image encoder under torch.autocast(bfloat16) or not "
        "(sdsam_nb.models.sam.Predictor, as load_sam makes it), the embedding kept in fp32; "
        f"scikit-image's astronaut (512x512 photograph), {cfg['reps']} turn(s) after a warm-up "
        f"of each; masks: the best of 3 candidates for one include click; pick_embed_dtype(cpu) "
        f"gives {m['pick']} here"
        + (f"; share of the CPU other processes used: {busy:.0%}" if busy is not None else "")
    )
    sec.notes.append(
        "random weights: the difference and IoU rows check that bfloat16's arithmetic stays "
        "near float32's for the same picture and clicks, not the masks' quality with trained "
        f"weights; targets: faster by at least {TARGET_SPEEDUP}x and every click's IoU at least "
        f"{TARGET_IOU}"
    )
    sec.extra.update(m, settings=cfg)
    return sec


def run(ctx: Context) -> Section:
    if ctx.cuda:
        return Section(NAME, TITLE).skip(
            "a CPU measurement (on a GPU SAM runs in fp32): --device cpu"
        )
    cfg = dict(QUICK_SETTINGS if ctx.quick else CPU_SETTINGS)
    if ctx.quick:
        return report(ctx, cfg, measure(cfg, quick=True))
    ctx.log(
        f"{NAME}: SAM {cfg['sam']}, float32 and bfloat16 x {cfg['reps']} turns: about 2 minutes"
    )
    target = "benchmarks.sam_dtype:measure"
    return report(ctx, cfg, run_worker(target, {"cfg": cfg}, timeout=1800, flush_denormal=True))
