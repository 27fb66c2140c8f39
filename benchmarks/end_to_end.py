"""End to end: subject → SAM clicks → new background → composite, ours (:func:`ours_pass`, the
default and the few-step mode) against a naive app (:func:`naive_pass`); what each does, the
settings and the targets: README.md. ``python -m benchmarks.end_to_end --size N ...`` runs the
CPU measurement alone with other settings and prints its raw timings as one JSON line.
"""

from __future__ import annotations

import argparse
import json
from contextlib import contextmanager
from dataclasses import replace
from functools import partial

import numpy as np
import torch

from sdsam_nb.models.fast import DEFAULT_STEPS, FAST

from .harness import Context, OtherLoad, Section, disc_mask, free, judged, measured, worker_main

NAME = "end_to_end"
TITLE = "End to end: subject, SAM clicks, inpainted background, composite (ours vs naive)"
SUBJECT_PROMPT = "a red teapot on a white table, studio photo"
BACKGROUND_PROMPT = "on a beach at sunset"
T4_ITS = 6.9  # SD 1.5 fp16 with PyTorch SDPA on a T4: about 6.9 it/s (published)
TARGET_TOTAL_S = 1.5
TARGET_RATIO = 4.0
TARGET_FAST_NAIVE = 12.0  # the few-step mode vs naive, end to end (issue 26)
TARGET_FAST_OURS = 4.0  # the few-step mode vs the default 25-step path, end to end (issue 26)
TARGET_PEAK_GB = 6.0
CLICKS = ((0.5, 0.5, True), (0.45, 0.6, True), (0.1, 0.1, False))  # fractions of (w, h)

# "dtype" is ours' SD ("auto": load_sd's dtype=None, pick_dtype's choice; naive is always
# fp32); "fast" the few-step mode of the second pass of ours (its steps and guidance are the
# adapter's); "warmup_steps" the steps of the untimed warm-up passes (0: none); "naive_warmup"
# 1 gives naive such a pass too (one click): on the CPU a first call at a new shape and dtype
# is several times slower, which a naive app pays once per process, not per picture.
QUICK_SETTINGS = {
    "size": 64,
    "steps": 2,
    "naive_steps": 4,
    "sam": "tiny",
    "dtype": "auto",
    "fast": "lcm",
    "warmup_steps": 0,
    "naive_warmup": 0,
}
GPU_SETTINGS = {**QUICK_SETTINGS, "size": 512, "steps": DEFAULT_STEPS, "naive_steps": 50}
GPU_SETTINGS.update(sam="vit_h", warmup_steps=25)
# The GPU's step counts (their ratio is what the sampler buys), at a quarter of the pixels and
# with vit_b (vit_h embeds ~6x slower and naive embeds three times): ~15 minutes on 2 cores.
CPU_SETTINGS = {**GPU_SETTINGS, "size": 256, "sam": "vit_b", "warmup_steps": 2, "naive_warmup": 1}


def settings(ctx: Context) -> dict:
    """The settings of ``ctx``'s kind of run: quick (tiny), GPU, or full size on the CPU."""
    return dict(QUICK_SETTINGS if ctx.quick else GPU_SETTINGS if ctx.cuda else CPU_SETTINGS)


def _usable(mask: np.ndarray, notes: list[str], who: str) -> np.ndarray:
    """``mask``, or a central disc if random weights made it empty, full, or specks too thin
    for the composite's default feather (which refuses a subject it would not paste whole)."""
    from sdsam_nb.background.common import DEFAULT_FEATHER
    from sdsam_nb.masks import inner_radius

    if mask.any() and not mask.all():
        if inner_radius(np.pad(mask, 1)) > DEFAULT_FEATHER:
            return mask
        what = f"specks (under {DEFAULT_FEATHER} px from their edge)"
    else:
        what = ("an empty" if not mask.any() else "a full") + " mask"
    notes.append(
        f"{who}: SAM (random weights) gave {what}; a central disc was used for the later stages"
    )
    return disc_mask(*mask.shape[::-1])  # the pictures are square


def ours_once(pipe, predictor, cfg: dict, ctx: Context, times: dict, notes: list[str], steps):
    """One pass of ours at ``steps`` (``None``: the pipeline's default), each stage's seconds
    added to ``times``."""
    from sdsam_nb.background import composite, generate, inpaint_background
    from sdsam_nb.segment.clicks import ClickSegmenter

    size = cfg["size"]
    with ctx.timing(times, "1 subject"):
        subject = generate(
            pipe, SUBJECT_PROMPT, seed=0, steps=steps, width=size, height=size, cache=False
        )[0]
    with ctx.timing(times, "2 SAM embedding"):
        seg = ClickSegmenter(predictor, subject, cache=False)
    with ctx.timing(times, "3 three clicks"):
        for fx, fy, positive in CLICKS:
            mask = seg.add_point(fx * size, fy * size, positive)
    mask = _usable(mask, notes, "ours")
    kw = {"seed": 0, "steps": steps, "size": size, "keep_subject": False}
    with ctx.timing(times, "4 inpainted background"):
        background = inpaint_background(pipe, subject, mask, BACKGROUND_PROMPT, **kw)[0]
    with ctx.timing(times, "5 composite"):
        composite(subject, mask, background)


@contextmanager
def local_adapter(fast: str, folder: str, quick: bool):
    """While open, ``fast``'s entry of :data:`sdsam_nb.models.fast.FAST` names a random rank-4
    LoRA (:func:`sdsam_nb.models.tiny.lora_folder`) for the SD in ``folder``, as nothing can be
    downloaded (fused into the UNet: its rank changes nothing of the sampling time)."""
    from sdsam_nb import cache_dir
    from sdsam_nb.models import fast as table
    from sdsam_nb.models.tiny import lora_folder

    mode = table.FAST[fast]
    root = cache_dir() / ("tiny" if quick else "bench")
    lora = lora_folder(root, fast, mode.weight_name, sd=None if quick else folder)
    table.FAST[fast] = replace(mode, adapter=str(lora))
    try:
        yield
    finally:
        table.FAST[fast] = mode


def ours_pass(ctx: Context, cfg: dict, folder, notes: list[str], fast: str | None = None) -> dict:
    """Load ours once (timed apart; with the few-step mode ``fast``), warm up, time one pass:
    ``{"loads", "times", "other", "peak", "unet_dtype", "scheduler", "sam_dtype"}``."""
    import sdsam_nb
    from sdsam_nb.models.devices import pick_embed_dtype
    from sdsam_nb.models.sam import Predictor

    from .fullsize import build_sam

    dtype = None if cfg["dtype"] == "auto" else cfg["dtype"]
    steps = None if fast else cfg["steps"]  # the few-step mode: the adapter's own
    free(ctx)
    loads: dict[str, float] = {}
    with ctx.timing(loads, "SD load"):
        pipe = sdsam_nb.load_sd(
            folder, device=ctx.device, dtype=dtype, safety_checker=False, progress=False, fast=fast
        )
    with ctx.timing(loads, "SAM load"):
        sam = build_sam(cfg["sam"], ctx.device)  # fp32 weights, as load_sam loads them
        # the image encoder in the dtype load_sam picks (bfloat16 on a CPU that has it)
        predictor = Predictor(sam, dtype=pick_embed_dtype(ctx.device, dtype))
    if cfg["warmup_steps"]:
        ctx.log(f"{NAME}: warm-up pass ({cfg['warmup_steps']} steps{', ' + fast if fast else ''})")
        ours_once(pipe, predictor, cfg, ctx, {}, [], cfg["warmup_steps"])
    ctx.log(f"{NAME}: our pass" + (f" (fast={fast})" if fast else ""))
    one_pass = partial(ours_once, pipe, predictor, cfg, ctx, notes=notes, steps=steps)
    out = {"loads": loads, **timed(ctx, one_pass)}
    out["unet_dtype"] = str(pipe.unet.dtype).removeprefix("torch.")
    out["scheduler"] = type(pipe.scheduler).__name__
    out["sam_dtype"] = str(predictor.dtype).removeprefix("torch.")
    del pipe, predictor, sam
    free(ctx)
    return out


def naive_once(folder, sam, cfg: dict, ctx: Context, times: dict, notes: list[str], clicks=CLICKS):
    """One pass of the naive app, each stage's seconds added to ``times``."""
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline
    from PIL import Image
    from segment_anything import SamPredictor

    from sdsam_nb.background import composite

    size, steps = cfg["size"], cfg["naive_steps"]
    kw = {"dtype": torch.float32, "safety_checker": None, "feature_extractor": None}
    kw["requires_safety_checker"] = False
    call = {"num_inference_steps": steps, "width": size, "height": size}
    with ctx.timing(times, "load text-to-image pipeline (per call)"):
        pipe = StableDiffusionPipeline.from_pretrained(folder, **kw).to(ctx.device)
        pipe.set_progress_bar_config(disable=True)
    with ctx.timing(times, "1 subject"):
        g = torch.Generator(ctx.device).manual_seed(0)
        subject = pipe(SUBJECT_PROMPT, generator=g, **call).images[0]
    del pipe
    free(ctx)
    predictor, rgb = SamPredictor(sam), np.asarray(subject)
    coords, labels = [], []
    with ctx.timing(times, "2+3 three clicks, embedding each"):
        for fx, fy, positive in clicks:
            coords.append((fx * size, fy * size))
            labels.append(int(positive))
            predictor.set_image(rgb)
            masks, scores, _ = predictor.predict(
                point_coords=np.array(coords),
                point_labels=np.array(labels),
                multimask_output=len(coords) == 1,
            )
            mask = masks[int(np.argmax(scores))]
    mask = _usable(mask, notes, "naive")
    with ctx.timing(times, "load inpainting pipeline (per call)"):
        pipe = StableDiffusionInpaintPipeline.from_pretrained(folder, **kw).to(ctx.device)
        pipe.set_progress_bar_config(disable=True)
    with ctx.timing(times, "4 inpainted background"):
        g = torch.Generator(ctx.device).manual_seed(0)
        mask_image = Image.fromarray((~mask).astype(np.uint8) * 255)  # white = repaint
        background = pipe(
            BACKGROUND_PROMPT, image=subject, mask_image=mask_image, generator=g, **call
        ).images[0]
    del pipe
    free(ctx)
    with ctx.timing(times, "5 composite"):
        composite(subject, mask, background)


def naive_pass(ctx: Context, cfg: dict, folder, notes: list[str]) -> dict:
    """The naive app's untimed warm-up (if ``cfg["naive_warmup"]``) and :func:`timed` pass."""
    from .fullsize import build_sam

    sam32 = build_sam(cfg["sam"], ctx.device)
    if cfg["naive_warmup"]:
        ctx.log(f"{NAME}: naive warm-up pass ({cfg['warmup_steps']} steps, one click)")
        warm = {**cfg, "naive_steps": cfg["warmup_steps"]}
        naive_once(folder, sam32, warm, ctx, {}, [], clicks=CLICKS[:1])
    ctx.log(f"{NAME}: naive pass")
    out = timed(ctx, partial(naive_once, folder, sam32, cfg, ctx, notes=notes))
    del sam32
    free(ctx)
    return out


def timed(ctx: Context, one_pass) -> dict:
    """``one_pass(times)`` (it adds each stage's seconds to ``times``): ``{"times", "other":
    the CPU share other processes used, "peak": peak GPU memory (``None`` on the CPU)}``."""
    if ctx.cuda:
        torch.cuda.reset_peak_memory_stats(ctx.device)
    times: dict[str, float] = {}
    with OtherLoad() as load:
        one_pass(times)
    peak = torch.cuda.max_memory_allocated(ctx.device) if ctx.cuda else None
    return {"times": times, "other": load.share, "peak": peak}


def measure(cfg: dict, device: str = "cpu", quick: bool = False) -> dict:
    """Both passes with ``cfg`` on ``device``: seconds per stage, peak GPU memory (``None`` on
    the CPU), the CPU share other processes used, notes. JSON-ready."""
    from .fullsize import sd_folder

    ctx = Context(device=torch.device(device), quick=quick)
    folder, notes = sd_folder(quick), []
    ours = ours_pass(ctx, cfg, folder, notes)
    with local_adapter(cfg["fast"], str(folder), quick):
        fast = ours_pass(ctx, cfg, folder, notes, fast=cfg["fast"])
    naive = naive_pass(ctx, cfg, folder, notes)
    return {
        "loads": ours["loads"],
        "ours": ours["times"],
        "peak_ours": ours["peak"],
        "unet_dtype": ours["unet_dtype"],
        "sam_dtype": ours["sam_dtype"],
        "fast": {k: fast[k] for k in ("loads", "times", "unet_dtype", "scheduler")},
        "naive": naive["times"],
        "peak_naive": naive["peak"],
        "other_cpu_share": {"ours": ours["other"], "fast": fast["other"], "naive": naive["other"]},
        "notes": list(dict.fromkeys(notes)),  # each note once
    }


def report(ctx: Context, cfg: dict, m: dict) -> Section:
    """The section for :func:`measure`'s result ``m`` (its few-step rows where it holds
    ``"fast"``)."""
    sec = Section(NAME, TITLE)
    loads, ours, naive, fast = m["loads"], m["ours"], m["naive"], m.get("fast")
    total_ours, total_naive = sum(ours.values()), sum(naive.values())

    def stages(who: str, loads: dict, times: dict) -> None:
        for name, t in loads.items():
            sec.add(f"{who}: {name} (once per session, not in the total)", t, "s")
        for name, t in times.items():
            sec.add(f"{who}: {name}", t, "s")

    stages("ours", loads, ours)
    h100 = judged(total_ours, "≤", TARGET_TOTAL_S, ctx, f"≤ {TARGET_TOTAL_S} s (H100)")
    sec.add("ours: end to end", total_ours, "s", **(h100 if ctx.cuda else {}))
    if fast:
        who, total_fast = f"ours few-step ({cfg['fast']})", sum(fast["times"].values())
        stages(who, fast["loads"], fast["times"])
        sec.add(f"{who}: end to end", total_fast, "s")
    stages("naive", {}, naive)
    sec.add("naive: end to end (its per-call loads included)", total_naive, "s")
    loads_naive = sum(t for name, t in naive.items() if name.startswith("load"))
    sec.add("naive: end to end without its loads", total_naive - loads_naive, "s")
    sec.add("speed-up without the naive loads", (total_naive - loads_naive) / total_ours, "x")
    ratio = total_naive / total_ours
    sec.add("speed-up, naive / ours", ratio, "x", **judged(ratio, "≥", TARGET_RATIO, ctx))
    if fast:
        ratio = total_naive / total_fast
        target = judged(ratio, "≥", TARGET_FAST_NAIVE, ctx)
        sec.add(f"speed-up, naive / {who}", ratio, "x", **target)
        ratio = total_ours / total_fast
        target = judged(ratio, "≥", TARGET_FAST_OURS, ctx)
        sec.add(f"speed-up, ours (default, {cfg['steps']} steps) / {who}", ratio, "x", **target)
    if ctx.cuda:
        peak = m["peak_ours"] / 1e9
        what = "ours: peak GPU memory (SD fp16 + SAM vit_h loaded)"
        sec.add(
            what, peak, "GB", **judged(peak, "≤", TARGET_PEAK_GB, ctx, f"≤ {TARGET_PEAK_GB} GB")
        )
        sec.add("naive: peak GPU memory", m["peak_naive"] / 1e9, "GB")
        its = cfg["steps"] / ours["1 subject"]
        sec.add("this GPU: SD it/s (subject stage, incl. text encoder and VAE)", its, "it/s")
        note = f"estimate: ours x {its:.1f}/{T4_ITS} it/s (published T4 rate), not measured"
        sec.add("T4 estimate: ours end to end", total_ours * its / T4_ITS, "s", note=note)
        note = f"estimate: {2 * cfg['steps']} steps / {T4_ITS} it/s, a lower bound"
        sec.add("T4 estimate: denoising alone", 2 * cfg["steps"] / T4_ITS, "s", note=note)
    sec.notes.extend(m["notes"])
    dtype = m["unet_dtype"]
    chosen = "pick_dtype's choice here" if cfg["dtype"] == "auto" else "as --dtype asked"
    text = (
        f"{cfg['size']}x{cfg['size']} px; ours as the kit runs by default: SD in {dtype} "
        f"({chosen}), DPM-Solver++ {cfg['steps']} steps, guidance 7.5, SAM {cfg['sam']} "
        f"embedding in {m['sam_dtype']} (as load_sam picks it; fp32 weights)"
    )
    if fast:
        mode = FAST[cfg["fast"]]
        text += (
            f"; ours few-step: load_sd(fast={cfg['fast']!r}), its defaults ({mode.steps} steps, "
            f"guidance {mode.guidance:g}, {fast['scheduler']}; SD in {fast['unet_dtype']}), a "
            "random LoRA fused into the UNet (README.md), the same SAM"
        )
    sec.notes.append(
        text + f"; naive: fp32, PNDM {cfg['naive_steps']} steps, pipelines loaded per call, "
        "embedding per click (its fp32 SAM built once, untimed: kind to the naive side)"
    )
    if not ctx.cuda and not ctx.quick:
        share = m.get("other_cpu_share") or {}
        busy = ", ".join(f"{k} {v:.0%}" for k, v in share.items() if isinstance(v, (int, float)))
        sec.notes.append(
            "CPU run, full-size architectures reduced to fit (README.md): an untimed "
            f"{cfg['warmup_steps']}-step warm-up pass of each side, then one timed pass, in one "
            "fresh process with subnormal floats flushed to zero; seconds of this shared CPU: "
            "only the ratios are meant to be quoted, and no GPU or T4 time follows from them"
            + (f". Share of the CPU other processes used: {busy}" if busy else "")
        )
    sec.extra.update({k: v for k, v in m.items() if k != "notes"}, settings=cfg)
    return sec


def run(ctx: Context) -> Section:
    cfg = settings(ctx)
    if not (ctx.cuda or ctx.quick):
        ctx.log(f"{NAME}: CPU, full size, in a fresh process: about 15 minutes on 2 idle cores")
    kwargs = {"cfg": cfg, "device": str(ctx.device), "quick": ctx.quick}
    m = measured(ctx, "benchmarks.end_to_end:measure", kwargs, timeout=3600, here=ctx.cuda)
    return report(ctx, cfg, m)


def parser() -> argparse.ArgumentParser:
    """The command line of the CPU measurement alone: one option per key of CPU_SETTINGS."""
    out = argparse.ArgumentParser(
        prog="python -m benchmarks.end_to_end",
        description="End to end, full size, on the CPU: prints the raw timings as one JSON line.",
    )
    for key, default in CPU_SETTINGS.items():
        out.add_argument(f"--{key.replace('_', '-')}", type=type(default), default=default)
    return out


if __name__ == "__main__":  # CPU, full size, in this fresh process: prints one JSON line
    args = parser()
    cfg = vars(args.parse_args())
    if cfg["size"] % 8 or cfg["size"] <= 0:
        args.error(f"--size must be a positive multiple of 8, got {cfg['size']}")
    if cfg["dtype"] != "auto" and not isinstance(getattr(torch, cfg["dtype"], None), torch.dtype):
        args.error(f"--dtype {cfg['dtype']!r}: 'auto' (the kit's choice) or a torch dtype")
    if cfg["fast"] not in FAST:
        args.error(f"--fast {cfg['fast']!r} is not one of {', '.join(FAST)}")
    spec = {"target": "benchmarks.end_to_end:measure", "kwargs": {"cfg": cfg}, "flush": True}
    worker_main(json.dumps(spec))
