"""Segmentation backends side by side, each against segment_anything's ``vit_b``: every backend
:func:`sdsam_nb.load_sam` serves, at its full-size architecture with random weights built from
its published configuration (:data:`CONFIGS_NOTE`), through ``ClickSegmenter``, fp32, each in a
fresh process of its own. What is measured: README.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch

from . import harness as h

NAME = "segmenters"
TITLE = "Segmentation backends: embedding, click and memory against segment_anything vit_b"
EMBED_REPS = 3  # timed embeddings after one warm-up (full runs)
CLICKS = 10  # timed clicks (full runs): two sessions of SESSION
SEED = 0

# What each family is for, in a few words.
PURPOSE = {
    "segment_anything": "reference: the kit's default SAM",
    "sam": "the same SAM through transformers",
    "slimsam": "small CPU/GPU (pruned SAM)",
    "sam_hq": "finer edges (hair, thin parts)",
    "sam2": "better masks, lighter encoder",
}
# SlimSAM sets only these two vision widths; the rest is SamConfig's default (CONFIGS_NOTE).
SLIMSAM_VISION = {
    "77": {"hidden_size": 168, "mlp_dim": 696},
    "50": {"hidden_size": 384, "mlp_dim": 1536},
}
# SAM 2.1 Hiera trunks: embed_dim, num_heads, stages, global_att_blocks,
# window_pos_embed_bkg_spatial_size, window_spec (a key a yaml leaves out takes the Hiera class
# default). Dims and heads double at each of the three stage changes (dim_mul = head_mul = 2).
SAM21_HIERA = {
    "tiny": (96, 1, [1, 2, 7, 2], [5, 7, 9], [7, 7], [8, 4, 14, 7]),
    "small": (96, 1, [1, 2, 11, 2], [7, 10, 13], [7, 7], [8, 4, 14, 7]),
    "base-plus": (112, 2, [2, 3, 16, 3], [12, 16, 20], [14, 14], [8, 4, 14, 7]),
    "large": (144, 2, [2, 6, 36, 4], [23, 33, 43], [7, 7], [8, 4, 16, 8]),
}
FLUSH_DENORMAL_NOTE = (
    "one fresh process per backend; on the CPU each flushes subnormal floats to zero "
    "(torch.set_flush_denormal, set before its first operation so that every thread has it): "
    "random weights drive activations into the subnormal range, where CPU matrix products run "
    "up to ~100x slower (a 2048x2048 fp32 matmul here: 7.6 s against 0.05 s), which trained "
    "weights do not"
)
CONFIGS_NOTE = (
    "configs: SamConfig() = facebook/sam-vit-base; SlimSAM-uniform-77/-50 vision "
    "hidden_size 168/384, mlp_dim 696/1536 (nielsr/slimsam-*-uniform config.json, "
    "transformers' SAM conversion script); SAM-HQ vit-b = SamHQConfig() with vit_dim "
    "768 (transformers' convert_samhq_to_hf.py); SAM 2.1 Hiera trunks from "
    "facebookresearch/sam2 sam2/configs/sam2.1/sam2.1_hiera_{t,s,b+,l}.yaml"
)


@dataclass(frozen=True)
class Backend:
    """One row of the comparison: how to build it and what it stands for."""

    name: str
    family: str  # a key of PURPOSE
    source: str  # the published checkpoint whose architecture it has
    build: Callable[[torch.device], Any]  # -> what ClickSegmenter takes


def sam2_hiera_config(size: str) -> dict:
    """``Sam2Config(vision_config=...)`` for SAM 2.1 Hiera ``size`` (a key of SAM21_HIERA)."""
    dim, heads, stages, global_blocks, background, windows = SAM21_HIERA[size]
    dims = [dim * 2**i for i in range(4)]
    backbone = {
        "model_type": "sam2_hiera_det_model",
        "hidden_size": dim,
        "num_attention_heads": heads,
        "blocks_per_stage": stages,
        "embed_dim_per_stage": dims,
        "num_attention_heads_per_stage": [heads * 2**i for i in range(4)],
        "window_size_per_stage": windows,
        "global_attention_blocks": global_blocks,
        "window_positional_embedding_background_size": background,
    }
    return {"backbone_config": backbone, "backbone_channel_list": dims[::-1]}


def _sa_vit_b(device: torch.device):
    from segment_anything import SamPredictor

    from .fullsize import build_sam

    return SamPredictor(build_sam("vit_b", device))


def hf_sam(family: str = "sam", size: str = ""):
    """``(processor, model)``: transformers' ``family`` model at its full-size architecture
    (``size``: a key of SLIMSAM_VISION or SAM21_HIERA) with random weights (seed first), and its
    published processor. The defaults, ``SamModel(SamConfig())``, are ``facebook/sam-vit-base``."""
    import transformers as tf

    if family == "sam2":
        model = tf.Sam2Model(tf.Sam2Config(vision_config=sam2_hiera_config(size)))
        return tf.Sam2Processor(tf.Sam2ImageProcessor()), model
    if family == "sam_hq":  # transformers' SAM-HQ conversion: vit-b, decoder vit_dim 768
        model = tf.SamHQModel(tf.SamHQConfig(mask_decoder_config={"vit_dim": 768}))
    else:
        model = tf.SamModel(tf.SamConfig(vision_config=SLIMSAM_VISION.get(size)))
    return tf.SamProcessor(tf.SamImageProcessor()), model


def _transformers(family: str, size: str, source: str, device: torch.device):
    """``TransformersSam`` over :func:`hf_sam`'s model, seeded as the kit's tiny models are."""
    from sdsam_nb.models.hf_sam import TransformersSam

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        processor, model = hf_sam(family, size)
    kind = "sam" if family == "slimsam" else family
    return TransformersSam(model.to(device).eval(), processor, family=kind, source=source)


def full_size_backends() -> list[Backend]:
    """The reference first, then the transformers families."""
    hf = [("sam-vit-base", "sam", "", "facebook/sam-vit-base")]
    hf += [
        (f"slimsam-uniform-{w}", "slimsam", w, f"Zigeng/SlimSAM-uniform-{w}")
        for w in SLIMSAM_VISION
    ]
    hf += [("sam-hq-vit-base", "sam_hq", "", "syscv-community/sam-hq-vit-base")]
    hf += [(f"sam2.1-hiera-{s}", "sam2", s, f"facebook/sam2.1-hiera-{s}") for s in SAM21_HIERA]
    out = [Backend("sa-vit_b", "segment_anything", "sam_vit_b_01ec64.pth", _sa_vit_b)]
    return out + [Backend(n, f, src, partial(_transformers, f, s, src)) for n, f, s, src in hf]


def _load(name: str, device: torch.device):
    import sdsam_nb

    return sdsam_nb.load_sam(name, device=device)


def quick_backends() -> list[Backend]:
    """The kit's tiny variants, loaded through :func:`sdsam_nb.load_sam`."""
    from sdsam_nb.models import hf_sam

    families = {"tiny": "segment_anything", "tiny-sam": "sam", "tiny-slimsam": "slimsam"}
    families.update({"tiny-sam-hq": "sam_hq", "tiny-sam2": "sam2"})
    return [
        Backend("sa-tiny" if n == "tiny" else n, family, n, partial(_load, n))
        for n, family in families.items()  # the kit's floor transformers lacks SAM-HQ, SAM 2
        if n == "tiny" or hf_sam.available(n)
    ]


def picture_and_clicks(n: int, seed: int = SEED):
    """The sample picture (``PIL`` RGB) and ``n`` clicks ``(x, y, positive)`` on it: sessions of
    :data:`SESSION`, include clicks on the subject, exclude clicks off it (the sample's mask)."""
    from PIL import Image

    from sdsam_nb import to_rgb
    from sdsam_nb.runs import sample_mask, sample_subject

    image = to_rgb(sample_subject())
    mask = np.asarray(Image.open(sample_mask()).convert("L")) > 127
    inside, outside = np.argwhere(mask), np.argwhere(~mask)
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        pool = inside if h.includes(k) else outside
        y, x = pool[rng.integers(len(pool))]
        out.append((float(x), float(y), h.includes(k)))
    return image, out


def measure(name: str, device: str, reps: int, n_clicks: int, quick: bool = False) -> dict:
    """Build backend ``name`` on ``device``; its parameters, embedding times after a warm-up
    (each with its peak memory on top of what was held before), click times and the share of
    the CPU other processes used meanwhile. The model is dropped before this returns."""
    from sdsam_nb import ClickSegmenter

    ctx = h.Context(device=torch.device(device))
    backend = next(
        b for b in (quick_backends() if quick else full_size_backends()) if b.name == name
    )
    image, points = picture_and_clicks(n_clicks)
    model = backend.build(ctx.device)
    params = list(model.model.parameters())  # SamPredictor and TransformersSam hold .model
    out = {"params": sum(p.numel() for p in params)}
    out["weight_bytes"] = sum(p.numel() * p.element_size() for p in params)
    with h.OtherLoad() as load:
        seg = ClickSegmenter(model, image)  # warm-up: encoder, then decoder
        h.session_clicks(seg, points[:2])
        embed_s, peaks, times = [], [], {}
        for _ in range(reps):
            seg = None  # the previous embedding is not held while the next is computed
            with h.PeakMemory(ctx) as mem, ctx.timing(times, "embed"):
                seg = ClickSegmenter(model, image)
            embed_s.append(times.pop("embed"))
            peaks.append(mem.peak)
        wall, sam = h.session_clicks(seg, points)
    del model, seg
    h.free(ctx)
    known = [p for p in peaks if p is not None]
    out.update(embedding_s=embed_s, click_s=wall, predict_s=sam, other_cpu_share=load.share)
    return {**out, "embed_peak_bytes": max(known) if known else None}


def run(ctx: h.Context) -> h.Section:
    sec = h.Section(NAME, TITLE)
    backends = quick_backends() if ctx.quick else full_size_backends()
    reps, n_clicks = (1, h.SESSION) if ctx.quick else (EMBED_REPS, CLICKS)
    ref = backends[0].name
    results: list[dict[str, Any]] = []
    for b in backends:
        row = {"name": b.name, "family": b.family, "source": b.source, "purpose": PURPOSE[b.family]}
        ctx.log(f"{NAME}: {b.name} ({b.source}): build, {reps}+1 embeddings, {n_clicks} clicks")
        args = {"name": b.name, "device": str(ctx.device), "reps": reps, "n_clicks": n_clicks}
        args["quick"] = ctx.quick
        try:
            row.update(h.measured(ctx, "benchmarks.segmenters:measure", args, timeout=3600))
        except Exception as exc:  # one backend that fails must not hide the others
            ctx.log(f"{NAME}: {b.name} failed: {type(exc).__name__}: {exc}")
            row["error"] = f"{type(exc).__name__}: {exc}"
        results.append(row)

    base = results[0]  # the reference's medians, unless it failed
    ref_s = {k: np.median(base[k]) for k in ("embedding_s", "click_s") if base.get(k)}
    for r in results:
        n = r["name"]
        if r.get("error"):
            sec.add(f"{n}: failed", None, note=r["error"][:120])
            continue
        embed, click = np.median(r["embedding_s"]), np.median(r["click_s"])
        peak = r["embed_peak_bytes"]
        sec.add(f"{n}: parameters", r["params"] / 1e6, "M", note=r["purpose"])
        sec.add(f"{n}: embedding, median of {reps}", embed, "s")
        sec.add(f"{n}: embedding / {ref}", embed / ref_s["embedding_s"] if ref_s else None, "x")
        sec.add(f"{n}: click, median of {n_clicks}", click, "s")
        sec.add(f"{n}: click / {ref}", click / ref_s["click_s"] if ref_s else None, "x")
        sec.add(f"{n}: embedding peak memory", None if peak is None else peak / 1e9, "GB")

    sec.extra.update(backends=results, clicks=picture_and_clicks(n_clicks)[1], reference=ref)
    mode = "quick: tiny models, numbers mean nothing" if ctx.quick else "full size, random weights"
    sec.notes.append(
        f"{mode}, fp32 on {ctx.device}; the sample picture (512x384, resized by each model's "
        f"processor: 1024 px at full size); embedding = ClickSegmenter construction, median of "
        f"{reps} after a warm-up; click = add_point wall time, median of {n_clicks} in sessions "
        f"of {h.SESSION}; ratios to {ref} within this run"
    )
    sec.notes.append(
        f"embedding peak memory = {h.PeakMemory(ctx).method} during one embedding, on top of the "
        "weights (weights = parameter count x 4 bytes)"
    )
    if not ctx.quick:
        sec.notes += [FLUSH_DENORMAL_NOTE if not ctx.cuda else "one fresh process per backend"]
        sec.notes.append(CONFIGS_NOTE)
    shares = [(r["name"], r.get("other_cpu_share")) for r in results]
    if not ctx.cuda and all(v is not None for _, v in shares):
        sec.notes.append(
            "share of the machine's CPU time other processes used while each backend was "
            "measured (other work skews CPU timings, clicks most: a small parallel op stalls "
            "while another core is busy): " + ", ".join(f"{n} {v:.0%}" for n, v in shares)
        )
    return sec
