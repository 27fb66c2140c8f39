"""End to end on a GPU: subject → SAM clicks → new background → composite, against a naive app.

ours (models loaded once, warm; the timed pass follows one untimed warm-up pass):

1. ``subject``: ``sdsam_nb.background.generate`` 512x512, DPM-Solver++ 25 steps, fp16;
2. ``embedding``: ``ClickSegmenter(predictor, subject)``: SAM vit_h image encoder, once
   (fp16 encoder via :func:`benchmarks.speedups.half_image_encoder`, decoder fp32);
3. ``3 clicks``: ``add_point`` x3 on the cached embedding;
4. ``background``: ``inpaint_background`` (SD's own weights through ``sdsam_nb.inpainting``,
   DPM-Solver++ 25 steps, ``keep_subject=False``);
5. ``composite``: ``sdsam_nb.background.composite``.

naive, in the style of the apps we are compared with: fp32; each pipeline
``from_pretrained`` from the saved folder on every call (its load time counts, shown as
its own stage, and the ratio without it is given too); PNDM 50
steps (SD v1-4's default); SAM vit_h fp32 (built once: kind to the naive side), its
embedding recomputed for every click (``set_image`` + ``predict``).

Reported: seconds per stage, the end-to-end total (ours: stages 1-5; loads listed apart),
peak GPU memory (``torch.cuda.max_memory_allocated`` over the pass, the resident weights of
SD fp16 and SAM vit_h included), the speed ratio, and a T4 **estimate**: our total scaled by
(this GPU's measured SD it/s) / (6.9 it/s, the published SD 1.5 fp16 rate on a T4), with the
denoising alone (50 steps / 6.9 it/s) as a lower bound. Targets
on an H100: total ≤ 1.5 s, ≥ 4x faster than naive, peak ≤ 6 GB.

Random weights: SAM's mask may come out empty or full; the later stages then use a fixed
central disc so that they run (and a note says so). Timings do not depend on the mask.

On the CPU (the default there) the same passes run at the same full-size architectures,
smaller: SAM ``vit_b`` instead of vit_h, a 256x256 picture (SAM still embeds it at
1024 px), ours DPM-Solver++ 25 steps against naive's PNDM 50 (the GPU's step counts, so
their ratio is the GPU's), ours in bfloat16 (the CPU's 2-byte dtype, as fp16 on the GPU;
SAM's image encoder too) against naive's fp32, and an untimed 2-step warm-up pass of each
side (a first CPU call at a new shape and dtype is slower). It runs in a
fresh process (:func:`_worker`) that flushes subnormal floats to zero before its first
operation (:data:`benchmarks.segmenters.FLUSH_DENORMAL_NOTE`): random weights would
otherwise slow SAM's encoder, which naive runs three times, far more than trained weights
do. Expect about 10 minutes on 2 idle cores, far longer on a busy machine (29 minutes once,
with other processes using 57-73% of the CPU); only its ratios are meant to be quoted, no GPU
or T4 time is derived from it. ``--quick`` runs the tiny models in-process (64x64, 2 and 4 steps) to
exercise the code path.

``python -m benchmarks.end_to_end [--size N] [--steps N] [--naive-steps N] [--sam NAME]
[--dtype NAME]`` runs the CPU measurement alone and prints its raw timings as one JSON line.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import os
import time

import numpy as np
import torch

from .harness import Context, Section, jsonable, run_worker
from .segmenters import _cpu_seconds, _other_share
from .speedups import half_image_encoder

NAME = "end_to_end"
TITLE = "End to end: subject, SAM clicks, inpainted background, composite (ours vs naive)"
SUBJECT_PROMPT = "a red teapot on a white table, studio photo"
BACKGROUND_PROMPT = "on a beach at sunset"
T4_ITS = 6.9  # SD 1.5 fp16 with PyTorch SDPA on a T4: about 6.9 it/s (published)
TARGET_TOTAL_S = 1.5
TARGET_RATIO = 4.0
TARGET_PEAK_GB = 6.0
CLICKS = ((0.5, 0.5, True), (0.45, 0.6, True), (0.1, 0.1, False))  # fractions of (w, h)

# What each kind of run measures. "dtype" is ours (SD and SAM's image encoder; naive is
# always fp32); "warmup_steps" the steps of our untimed warm-up pass (0: none); "naive_warmup"
# 1 gives naive an untimed pass too (same steps, one click): on the CPU a first call at a new
# shape and dtype is several times slower, which a naive app pays once per process, not per
# picture.
QUICK_SETTINGS = {
    "size": 64,
    "steps": 2,
    "naive_steps": 4,
    "sam": "tiny",
    "dtype": "float32",
    "warmup_steps": 0,
    "naive_warmup": 0,
}
GPU_SETTINGS = {
    "size": 512,
    "steps": 25,
    "naive_steps": 50,
    "sam": "vit_h",
    "dtype": "float16",
    "warmup_steps": 25,
    "naive_warmup": 0,
}
# The GPU's step counts (their ratio is what the sampler buys), at a quarter of the pixels and
# with vit_b (vit_h embeds ~6x slower and naive embeds three times): ~7 minutes on 2 cores.
CPU_SETTINGS = {
    "size": 256,
    "steps": 25,
    "naive_steps": 50,
    "sam": "vit_b",
    "dtype": "bfloat16",
    "warmup_steps": 2,
    "naive_warmup": 1,
}
WORKER_TIMEOUT_S = 3600


class _Stages:
    """Stage timer: ``with stages("name"):`` adds the GPU-synchronised wall time."""

    def __init__(self, ctx: Context):
        self.ctx, self.times = ctx, {}

    def __call__(self, name: str):
        return _Stage(self, name)


class _Stage:
    def __init__(self, owner: _Stages, name: str):
        self.owner, self.name = owner, name

    def __enter__(self):
        self.owner.ctx.sync()
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        self.owner.ctx.sync()
        t = time.perf_counter() - self.start
        self.owner.times[self.name] = self.owner.times.get(self.name, 0.0) + t


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
        what = "an empty" if not mask.any() else "a full"
        what += " mask"
    h, w = mask.shape
    yy, xx = np.mgrid[0:h, 0:w]
    notes.append(
        f"{who}: SAM (random weights) gave {what}; a central disc was used for the later stages"
    )
    return (xx - w / 2) ** 2 + (yy - h / 2) ** 2 < (min(h, w) / 4) ** 2


def _settings(ctx: Context) -> dict:
    """The settings of ``ctx``'s kind of run: quick (tiny), GPU, or full size on the CPU."""
    if ctx.quick:
        return dict(QUICK_SETTINGS)
    return dict(GPU_SETTINGS if ctx.cuda else CPU_SETTINGS)


def _dtype(name: str) -> torch.dtype:
    return getattr(torch, name)


def _free(ctx: Context) -> None:
    import sdsam_nb

    sdsam_nb.clear_loaded()
    gc.collect()
    if ctx.cuda:
        torch.cuda.empty_cache()


def _no_cache(fn) -> dict:
    """``{"cache": False}`` where ``fn`` takes a ``cache`` flag, else ``{}``: the timed pass
    computes everything and never reads the kit's disk cache of generated pictures or SAM
    embeddings (a second run of the benchmark would otherwise time a lookup)."""
    return {"cache": False} if "cache" in inspect.signature(fn).parameters else {}


def ours_once(pipe, predictor, cfg: dict, st: _Stages, notes: list[str]):
    from sdsam_nb.background import composite, generate, inpaint_background
    from sdsam_nb.segment.clicks import ClickSegmenter

    size = cfg["size"]
    with st("1 subject"):
        subject = generate(
            pipe,
            SUBJECT_PROMPT,
            seed=0,
            steps=cfg["steps"],
            width=size,
            height=size,
            **_no_cache(generate),
        )[0]
    with st("2 SAM embedding"):
        seg = ClickSegmenter(predictor, subject, **_no_cache(ClickSegmenter))
    with st("3 three clicks"):
        for fx, fy, positive in CLICKS:
            mask = seg.add_point(fx * size, fy * size, positive)
    mask = _usable(mask, notes, "ours")
    with st("4 inpainted background"):
        background = inpaint_background(
            pipe,
            subject,
            mask,
            BACKGROUND_PROMPT,
            seed=0,
            steps=cfg["steps"],
            size=size,
            keep_subject=False,
            **_no_cache(inpaint_background),
        )[0]
    with st("5 composite"):
        result = composite(subject, mask, background)
    return result


def naive_once(folder, sam, cfg: dict, ctx: Context, st: _Stages, notes: list[str], clicks=CLICKS):
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline
    from PIL import Image
    from segment_anything import SamPredictor

    from sdsam_nb.background import composite

    size, steps = cfg["size"], cfg["naive_steps"]
    kwargs = {
        "dtype": torch.float32,
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }
    with st("load text-to-image pipeline (per call)"):
        pipe = StableDiffusionPipeline.from_pretrained(folder, **kwargs).to(ctx.device)
        pipe.set_progress_bar_config(disable=True)
    with st("1 subject"):
        g = torch.Generator(ctx.device).manual_seed(0)
        subject = pipe(
            SUBJECT_PROMPT, num_inference_steps=steps, width=size, height=size, generator=g
        ).images[0]
    del pipe
    _free(ctx)
    predictor = SamPredictor(sam)
    rgb = np.asarray(subject)
    coords, labels = [], []
    with st("2+3 three clicks, embedding each"):
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
    with st("load inpainting pipeline (per call)"):
        pipe = StableDiffusionInpaintPipeline.from_pretrained(folder, **kwargs).to(ctx.device)
        pipe.set_progress_bar_config(disable=True)
    with st("4 inpainted background"):
        g = torch.Generator(ctx.device).manual_seed(0)
        mask_image = Image.fromarray((~mask).astype(np.uint8) * 255)  # white = repaint
        background = pipe(
            BACKGROUND_PROMPT,
            image=subject,
            mask_image=mask_image,
            num_inference_steps=steps,
            width=size,
            height=size,
            generator=g,
        ).images[0]
    del pipe
    _free(ctx)
    with st("5 composite"):
        result = composite(subject, mask, background)
    return result


def measure(ctx: Context, cfg: dict) -> dict:
    """Both passes with ``cfg`` (see :data:`CPU_SETTINGS`) on ``ctx.device``: the raw timings
    in seconds per stage, peak GPU memory (``None`` on the CPU), notes. JSON-ready."""
    from segment_anything import SamPredictor

    import sdsam_nb

    from .fullsize import build_sam

    if ctx.quick:
        folder = sdsam_nb.models.tiny.sd_folder(sdsam_nb.cache_dir() / "tiny")
    else:
        from .fullsize import sd_v14_folder

        folder = sd_v14_folder()
    dtype = _dtype(cfg["dtype"])
    notes: list[str] = []

    # ---- ours: load once (timed apart), one warm-up pass, one timed pass
    _free(ctx)
    loads = _Stages(ctx)
    with loads("SD load"):
        pipe = sdsam_nb.load_sd(  # DPM-Solver++, load_sd's default sampler
            folder, device=ctx.device, dtype=dtype, safety_checker=False, progress=False
        )
        assert type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    with loads("SAM load"):
        sam = build_sam(cfg["sam"], ctx.device)
        if dtype != torch.float32:
            half_image_encoder(sam, dtype)
        predictor = SamPredictor(sam)
    if cfg["warmup_steps"]:
        ctx.log(f"{NAME}: warm-up pass ({cfg['warmup_steps']} steps)")
        ours_once(pipe, predictor, {**cfg, "steps": cfg["warmup_steps"]}, _Stages(ctx), [])
    if ctx.cuda:
        torch.cuda.reset_peak_memory_stats(ctx.device)
    ctx.log(f"{NAME}: our pass")
    ours = _Stages(ctx)
    start = _cpu_seconds()
    ours_once(pipe, predictor, cfg, ours, notes)
    other_ours = _other_share(start, _cpu_seconds())
    peak_ours = torch.cuda.max_memory_allocated(ctx.device) if ctx.cuda else None
    unet_dtype = str(pipe.unet.dtype).removeprefix("torch.")
    del pipe, predictor, sam
    _free(ctx)

    # ---- naive: fp32, loads per call, embedding per click, its own sampler (PNDM)
    sam32 = build_sam(cfg["sam"], ctx.device)
    if ctx.cuda:
        torch.cuda.reset_peak_memory_stats(ctx.device)
    if cfg["naive_warmup"]:
        ctx.log(f"{NAME}: naive warm-up pass ({cfg['warmup_steps']} steps, one click)")
        warm = {**cfg, "naive_steps": cfg["warmup_steps"]}
        naive_once(folder, sam32, warm, ctx, _Stages(ctx), [], clicks=CLICKS[:1])
    ctx.log(f"{NAME}: naive pass")
    naive = _Stages(ctx)
    start = _cpu_seconds()
    naive_once(folder, sam32, cfg, ctx, naive, notes)
    other_naive = _other_share(start, _cpu_seconds())
    peak_naive = torch.cuda.max_memory_allocated(ctx.device) if ctx.cuda else None
    del sam32
    _free(ctx)
    return {
        "loads": loads.times,
        "ours": ours.times,
        "naive": naive.times,
        "peak_ours": peak_ours,
        "peak_naive": peak_naive,
        "unet_dtype": unet_dtype,
        "other_cpu_share": {"ours": other_ours, "naive": other_naive},
        "notes": list(dict.fromkeys(notes)),  # each note once
    }


def report(ctx: Context, cfg: dict, m: dict) -> Section:
    """The section for :func:`measure`'s result ``m``."""
    sec = Section(NAME, TITLE)
    loads, ours, naive = m["loads"], m["ours"], m["naive"]
    total_ours = sum(ours.values())
    total_naive = sum(naive.values())
    judge = not ctx.quick  # the ratio is judged on both devices, absolute times on a GPU only
    for name, t in loads.items():
        sec.add(f"ours: {name} (once per session, not in the total)", t, "s")
    for name, t in ours.items():
        sec.add(f"ours: {name}", t, "s")
    sec.add(
        "ours: end to end",
        total_ours,
        "s",
        target=f"≤ {TARGET_TOTAL_S} s (H100)" if ctx.cuda else "",
        met=(total_ours <= TARGET_TOTAL_S) if judge and ctx.cuda else None,
    )
    for name, t in naive.items():
        sec.add(f"naive: {name}", t, "s")
    sec.add("naive: end to end (its per-call loads included)", total_naive, "s")
    loads_naive = sum(t for name, t in naive.items() if name.startswith("load"))
    sec.add("naive: end to end without its loads", total_naive - loads_naive, "s")
    sec.add("speed-up without the naive loads", (total_naive - loads_naive) / total_ours, "x")
    ratio = total_naive / total_ours
    sec.add(
        "speed-up, naive / ours",
        ratio,
        "x",
        target=f"≥ {TARGET_RATIO}",
        met=(ratio >= TARGET_RATIO) if judge else None,
    )
    if ctx.cuda:
        peak_ours, peak_naive = m["peak_ours"], m["peak_naive"]
        sec.add(
            "ours: peak GPU memory (SD fp16 + SAM vit_h loaded)",
            peak_ours / 1e9,
            "GB",
            target=f"≤ {TARGET_PEAK_GB} GB",
            met=(peak_ours / 1e9 <= TARGET_PEAK_GB) if judge else None,
        )
        sec.add("naive: peak GPU memory", peak_naive / 1e9, "GB")
        its = cfg["steps"] / ours["1 subject"]
        scale = its / T4_ITS
        sec.add("this GPU: SD it/s (subject stage, incl. text encoder and VAE)", its, "it/s")
        sec.add(
            "T4 estimate: ours end to end",
            total_ours * scale,
            "s",
            note=f"estimate: ours x {its:.1f}/{T4_ITS} it/s (published T4 rate), not measured",
        )
        sec.add(
            "T4 estimate: denoising alone",
            2 * cfg["steps"] / T4_ITS,
            "s",
            note=f"estimate: {2 * cfg['steps']} steps / {T4_ITS} it/s, a lower bound",
        )
    if m["unet_dtype"] != cfg["dtype"]:
        sec.notes.append(
            f"ours: SD was loaded as {cfg['dtype']} but its UNet is {m['unet_dtype']} after "
            "inpaint_background (sdsam_nb.inpainting -> diffusers from_pipe casts the shared "
            "modules to float32 unless given dtype=)"
        )
    sec.notes.extend(m["notes"])
    encoder = f" ({cfg['dtype']} image encoder)" if cfg["dtype"] != "float32" else ""
    sec.notes.append(
        f"{cfg['size']}x{cfg['size']} px, ours: {cfg['dtype']} DPM-Solver++ {cfg['steps']} steps "
        f"+ SAM {cfg['sam']}{encoder}; naive: fp32, "
        f"PNDM {cfg['naive_steps']} steps, pipelines loaded per call, embedding per click (its "
        "SAM fp32 is built once, outside the timing: kind to the naive side)"
    )
    if not ctx.cuda and not ctx.quick:
        share = m.get("other_cpu_share") or {}
        busy = ", ".join(
            f"{who} {v:.0%}" for who, v in share.items() if isinstance(v, (int, float))
        )
        gpu = GPU_SETTINGS
        sec.notes.append(
            "CPU run, full-size architectures (SD v1-4 UNet, VAE and text encoder; SAM "
            f"{cfg['sam']}), random weights, reduced to fit 2 cores: {cfg['size']} px (GPU run: "
            f"{gpu['size']}), SAM {cfg['sam']} (GPU run: {gpu['sam']}), steps {cfg['steps']} vs "
            f"{cfg['naive_steps']} (GPU run: {gpu['steps']} vs {gpu['naive_steps']}); SAM "
            "embeds at 1024 px whatever the picture size. Seconds are this shared 2-core "
            "CPU's, measured in one fresh process with subnormal floats flushed to zero "
            "(random weights otherwise slow SAM's encoder far more than trained weights do); "
            "only the ratios are meant to be quoted, and no GPU or T4 time follows from them. "
            f"Warm-up, untimed: one {cfg['warmup_steps']}-step pass of each side (naive's with "
            "one click), since a first CPU call at a new shape and dtype is slower; naive's "
            "timed pass still loads its pipelines per call"
            + (f". Share of the CPU other processes used: {busy}" if busy else "")
        )
    sec.extra.update(
        {k: m[k] for k in ("ours", "naive", "loads", "peak_ours", "peak_naive", "unet_dtype")},
        settings=cfg,
        other_cpu_share=m.get("other_cpu_share"),
    )
    return sec


def _worker_args(cfg: dict) -> list[str]:
    """``cfg`` as :func:`_worker`'s command line."""
    args = []
    for key in CPU_SETTINGS:
        args += [f"--{key.replace('_', '-')}", str(cfg[key])]
    return args


def run(ctx: Context) -> Section:
    cfg = _settings(ctx)
    if ctx.cuda or ctx.quick:
        return report(ctx, cfg, measure(ctx, cfg))
    ctx.log(
        f"{NAME}: CPU, full size ({cfg['size']} px, {cfg['steps']} vs {cfg['naive_steps']} "
        f"steps, SAM {cfg['sam']}) in a fresh process: about 10 minutes on 2 idle cores"
    )
    m = run_worker("benchmarks.end_to_end", _worker_args(cfg), timeout=WORKER_TIMEOUT_S, what=NAME)
    return report(ctx, cfg, m)


def _parser() -> argparse.ArgumentParser:
    """The worker's options: one per key of :data:`CPU_SETTINGS`, defaulting to it."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.end_to_end",
        description="End to end, full size, on the CPU: prints the raw timings as one JSON line.",
    )
    for key, default in CPU_SETTINGS.items():
        kind = int if isinstance(default, int) else str
        parser.add_argument(f"--{key.replace('_', '-')}", type=kind, default=default)
    return parser


def _worker(argv: list[str] | None = None) -> None:
    """The CPU measurement in this fresh process: prints :func:`measure`'s result as JSON."""
    parser = _parser()
    cfg = vars(parser.parse_args(argv))
    if cfg["size"] % 8 or cfg["size"] <= 0:
        parser.error(f"--size must be a positive multiple of 8, got {cfg['size']}")
    if not isinstance(getattr(torch, cfg["dtype"], None), torch.dtype):
        parser.error(f"--dtype {cfg['dtype']!r} is not a torch dtype (e.g. bfloat16, float32)")
    # Before the first parallel op, so that every worker thread inherits it (afterwards it
    # reaches the calling thread only): see benchmarks.segmenters.FLUSH_DENORMAL_NOTE.
    torch.set_flush_denormal(True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from diffusers.utils import logging as dlogging

    dlogging.set_verbosity_error()
    dlogging.disable_progress_bar()
    result = measure(Context(device=torch.device("cpu")), cfg)
    print(json.dumps(jsonable(result)), flush=True)


if __name__ == "__main__":  # CPU, full size: prints one JSON line (run() starts this)
    _worker()
