"""Speed-ups against their baselines, "keep" when at least :data:`KEEP` times faster (SAM's
half-precision encoder: and masks that agree with fp32), and what relighting costs. Which run
where: README.md; ``--quick``: the tiny models."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import torch

from .harness import Context, Section, free, interleaved, iou, judged, time_reps

NAME = "speedups"
TITLE = "Speed-ups: attention, scheduler, SAM fp16, channels_last, compile, CPU offload; relight"
KEEP = 1.05  # at least 5 % faster to keep a speed-up
IOU_MIN = 0.99
PROMPT = "a red teapot on a wooden table, studio photo"


def unet_forward(unet, latent: int, ctx: Context, dtype, layout=torch.contiguous_format):
    """One UNet forward of batch 2 (classifier-free guidance) at ``latent`` x ``latent``, on
    fixed random inputs in ``layout``, as a call to time."""
    g = torch.Generator("cpu").manual_seed(0)
    sample = torch.randn(2, unet.config.in_channels, latent, latent, generator=g)
    text = torch.randn(2, 77, unet.config.cross_attention_dim, generator=g)
    sample = sample.to(ctx.device, dtype).contiguous(memory_format=layout)
    text, t = text.to(ctx.device, dtype), torch.tensor([500, 500], device=ctx.device)

    def call():
        with torch.inference_mode():
            return unet(sample, t, encoder_hidden_states=text).sample

    return call


def _judge(sec: Section, ctx: Context, metric: str, speedup: float, note: str = "") -> None:
    sec.add(metric, speedup, "x", **judged(speedup, "≥", KEEP, ctx, f"≥ {KEEP} to keep"), note=note)
    sec.extra.setdefault("decisions", {})[metric] = "keep" if speedup >= KEEP else "drop"


def _variants(sec: Section, ctx: Context, cases: dict, reps: int, warm: int, metric: str, **notes):
    """Two variants of a UNet forward (``cases`` as for :func:`interleaved`, baseline first) in
    turns: a row for each (``notes["row"]``) and the second's speed-up (``notes["judge"]``)."""
    times = interleaved(cases, ctx, reps, warm)
    for name, t in times.items():
        sec.add(f"UNet forward, {name}", np.median(t), "s", note=notes.get("row", ""))
    base, fast = (np.median(t) for t in times.values())
    _judge(sec, ctx, metric, base / fast, note=notes.get("judge", ""))
    return times


def attention(sec: Section, ctx: Context, pipe, dtype) -> None:
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    unet = pipe.unet
    # CPU: ~10 s a forward on 2 cores, 6 forwards: about a minute
    latent, reps, warm = (8, 1, 0) if ctx.quick else (64, 10, 3) if ctx.cuda else (64, 2, 1)
    forward = unet_forward(unet, latent, ctx, dtype)

    def using(proc) -> Callable[[], Callable[[], object]]:
        return lambda: (unet.set_attn_processor(proc()), forward)[1]

    ctx.log(f"{NAME}: UNet forward, classic vs SDPA attention, in turns")
    cases = {
        "classic AttnProcessor": using(AttnProcessor),
        "SDPA AttnProcessor2_0": using(AttnProcessor2_0),
    }
    metric = "SDPA speed-up over classic attention"
    note = {"row": f"batch 2, {latent}x{latent} latents", "judge": f"median of {reps}"}
    sec.extra["attention_s"] = _variants(sec, ctx, cases, reps, warm, metric, **note)
    unet.set_attn_processor(AttnProcessor2_0())


def channels_last(sec: Section, ctx: Context, pipe, dtype) -> None:
    unet = pipe.unet
    latent, reps, warm = (8, 1, 0) if ctx.quick else (64, 10, 3)

    def layout(fmt) -> Callable[[], Callable[[], object]]:
        return lambda: unet_forward(unet.to(memory_format=fmt), latent, ctx, dtype, fmt)

    cases = {"default layout": layout(torch.contiguous_format)}
    cases["channels_last"] = layout(torch.channels_last)
    _variants(sec, ctx, cases, reps, warm, "channels_last speed-up")
    unet.to(memory_format=torch.contiguous_format)


def compiled(sec: Section, ctx: Context, pipe, dtype) -> None:
    base = np.median(time_reps(unet_forward(pipe.unet, 64, ctx, dtype), ctx, 10, 3))
    forward = unet_forward(torch.compile(pipe.unet), 64, ctx, dtype)
    ctx.log(f"{NAME}: torch.compile of the UNet (first call compiles; a minute or two)")
    (compile_s,) = time_reps(forward, ctx, 1)
    fast = np.median(time_reps(forward, ctx, 10, 3))
    sec.add("torch.compile: first call (compiles)", compile_s, "s")
    sec.add("UNet forward, eager", base, "s")
    sec.add("UNet forward, compiled", fast, "s")
    _judge(sec, ctx, "torch.compile speed-up (option)", base / fast)
    del forward
    torch.compiler.reset()


def schedulers(sec: Section, ctx: Context, pipe) -> None:
    from sdsam_nb.background import generate

    size = 64 if ctx.quick else 512
    runs = (
        [("pndm", 4), ("dpm++", 2)] if ctx.quick else [("pndm", 50), ("dpm++", 25), ("dpm++", 20)]
    )
    if not ctx.quick:
        generate(pipe, PROMPT, steps=2, width=size, height=size, scheduler="dpm++")  # warm-up
    times = {}
    for name, steps in runs:
        ctx.log(f"{NAME}: text-to-image {size}px, {name} {steps} steps")

        def call(name=name, steps=steps):
            generate(pipe, PROMPT, steps=steps, width=size, height=size, scheduler=name)

        times[(name, steps)] = np.median(time_reps(call, ctx, reps=1 if ctx.quick else 3))
        sec.add(f"text-to-image {size}px, {name} {steps} steps", times[(name, steps)], "s")
    note = "time only: random weights cannot judge quality"
    for name, steps in runs[1:]:
        speedup = times[runs[0]] / times[(name, steps)]
        _judge(sec, ctx, f"{name} {steps} steps speed-up over pndm {runs[0][1]}", speedup, note)


def sam_half(sec: Section, ctx: Context) -> None:
    """SAM's image encoder under autocast to half precision (``Predictor(dtype=...)``, as
    ``load_sam`` runs it; the embedding back in fp32) against fp32: time and masks."""
    from sdsam_nb.models.sam import Predictor

    from .fullsize import build_sam
    from .harness import click_plan, disc_picture

    model_type = "tiny" if ctx.quick else ("vit_h" if ctx.cuda else "vit_b")
    half = torch.float16 if ctx.cuda else torch.bfloat16
    half_name = str(half).removeprefix("torch.")
    sam = build_sam(model_type, ctx.device)
    image = np.asarray(disc_picture(512, 512))
    reps, warm = (1, 0) if ctx.quick else (5, 2)

    def embed_and_masks(dtype) -> tuple[float, torch.Tensor, list[np.ndarray]]:
        predictor = Predictor(sam, dtype=dtype)
        seconds = np.median(time_reps(lambda: predictor.set_image(image), ctx, reps, warm))
        masks = []
        for x, y, positive in click_plan(5, 512, 512, seed=2):
            point, label = np.array([[x, y]]), np.array([int(positive)])
            m, _, _ = predictor.predict(point, label, multimask_output=False)
            masks.append(m[0])
        return seconds, predictor.features.float().clone(), masks

    t32, emb32, m32 = embed_and_masks(torch.float32)
    t16, emb16, m16 = embed_and_masks(half)
    ious = [iou(a, b) for a, b in zip(m32, m16, strict=True)]
    rel = float((emb16 - emb32).norm() / emb32.norm().clamp_min(1e-12))
    sec.add(f"SAM {model_type} set_image, fp32", t32, "s")
    sec.add(f"SAM {model_type} set_image, {half_name} encoder", t16, "s")
    sec.add(f"SAM {half_name} encoder: embedding relative error", rel, "")
    what = f"SAM {half_name} encoder: min mask IoU vs fp32 ({len(ious)} clicks)"
    sec.add(what, min(ious), "", **judged(min(ious), "≥", IOU_MIN, ctx))
    keep = min(ious) >= IOU_MIN and t32 / t16 >= 1.0
    target = {"target": "≥ 1 and IoU ok to keep", "met": None if ctx.quick else keep}
    sec.add(f"SAM {half_name} encoder speed-up", t32 / t16, "x", **target)
    sec.extra.setdefault("decisions", {})["sam_half_encoder"] = "keep" if keep else "drop"
    sec.extra["sam_half_ious"] = ious


def offload(sec: Section, ctx: Context, folder) -> None:
    """A 512 px DPM-Solver++ 25-step call with the pipeline resident on the GPU, then with
    ``offload=True`` (what a user with a small GPU sets): time and peak GPU memory."""
    import sdsam_nb
    from sdsam_nb.background import generate

    out = {}
    for offloaded in (False, True):
        free(ctx)
        kw = {"device": ctx.device, "dtype": torch.float16, "safety_checker": False}
        pipe = sdsam_nb.load_sd(folder, **kw, progress=False, offload=offloaded)
        generate(pipe, PROMPT, steps=2, scheduler="dpm++")  # warm-up
        torch.cuda.reset_peak_memory_stats(ctx.device)
        call = partial(generate, pipe, PROMPT, steps=25, scheduler="dpm++")
        (seconds,) = time_reps(call, ctx, 1)
        out[offloaded] = seconds, torch.cuda.max_memory_allocated(ctx.device) / 1e9
        del pipe
    free(ctx)
    (t_res, peak_res), (t_off, peak_off) = out[False], out[True]
    sec.add("512px dpm++ 25 steps, resident: time", t_res, "s")
    sec.add("512px dpm++ 25 steps, resident: peak GPU memory", peak_res, "GB")
    sec.add("model CPU offload (option): time", t_off, "s")
    sec.add("model CPU offload (option): peak GPU memory", peak_off, "GB")
    sec.add("CPU offload: GPU memory saved", peak_res - peak_off, "GB")


def relight_cost(sec: Section, ctx: Context, pipe, folder) -> None:
    """One relight (IC-Light text mode, 25 steps, its default) against one inpainting (own
    weights, 25 steps) of the sample picture at the same size on the same pipeline: 256 px on
    the CPU, 512 px on a GPU. The offsets are random, made for the full-size UNet (timing
    only); the IC-Light UNet is built first and timed apart (once per pipeline and mode)."""
    from PIL import Image

    import sdsam_nb
    from sdsam_nb import runs
    from sdsam_nb.models import cache_dir
    from sdsam_nb.models.iclight import load_iclight
    from sdsam_nb.models.tiny import iclight_folder

    size, steps = (64, 2) if ctx.quick else (512 if ctx.cuda else 256, 25)
    # random offsets of the loaded UNet's shapes (full size: both files, about 3.4 GB, once)
    root = cache_dir() / ("tiny" if ctx.quick else "bench/iclight-sd-v1-4-arch")
    weights = iclight_folder(root, sd=folder)
    subject = Image.open(runs.sample_subject()).convert("RGB")
    mask = np.asarray(Image.open(runs.sample_mask()).convert("L")) > 127
    times: dict[str, float] = {}
    ctx.log(f"{NAME}: IC-Light UNet, then one inpainting and one relight at {size}px")
    with ctx.timing(times, "build"):
        load_iclight(pipe, "text", weights)
    args = {"seed": 0, "steps": steps, "size": size}
    with ctx.timing(times, "inpaint"):
        sdsam_nb.inpaint_background(pipe, subject, mask, PROMPT, guidance=7.5, **args)
    with ctx.timing(times, "relight"):
        sdsam_nb.relight(pipe, subject, mask, prompt="warm light", weights=weights, **args)
    sec.add("IC-Light UNet built from the pipeline's (once)", times["build"], "s")
    sec.add(f"inpainting {size}px, {steps} steps", times["inpaint"], "s")
    sec.add(f"relight {size}px, {steps} steps", times["relight"], "s")
    sec.add(
        f"relight / inpainting time at {size}px",
        times["relight"] / times["inpaint"],
        "x",
        note="one call each; both guided (batch 2): relight 2, inpainting 7.5",
    )
    sec.extra["relight_s"] = times


def _guarded(sec: Section, ctx: Context, what: str, fn: Callable[[], None]) -> None:
    """Run one measurement; a failure becomes a row, the others still run."""
    try:
        fn()
    except Exception as exc:  # e.g. torch.compile without a compiler on the machine
        ctx.log(f"{NAME}: {what} failed: {type(exc).__name__}: {exc}")
        sec.add(f"{what}: failed", None, note=f"{type(exc).__name__}: {str(exc)[:120]}")
        free(ctx)


def run(ctx: Context) -> Section:
    import sdsam_nb

    from .fullsize import sd_folder

    sec = Section(NAME, TITLE)
    folder = sd_folder(ctx.quick)
    dtype = torch.float16 if ctx.cuda else torch.float32
    pipe = sdsam_nb.load_sd(
        folder, device=ctx.device, dtype=dtype, safety_checker=False, progress=False
    )
    _guarded(sec, ctx, "attention", partial(attention, sec, ctx, pipe, dtype))
    if ctx.cuda or ctx.quick:
        _guarded(sec, ctx, "scheduler", partial(schedulers, sec, ctx, pipe))
        _guarded(sec, ctx, "channels_last", partial(channels_last, sec, ctx, pipe, dtype))
        _guarded(sec, ctx, "SAM half encoder", partial(sam_half, sec, ctx))
        free(ctx)
    if ctx.cuda:
        _guarded(sec, ctx, "torch.compile", partial(compiled, sec, ctx, pipe, dtype))
    _guarded(sec, ctx, "relight", partial(relight_cost, sec, ctx, pipe, folder))
    del pipe
    free(ctx)
    if ctx.cuda:
        _guarded(sec, ctx, "CPU offload", partial(offload, sec, ctx, folder))
    elif not ctx.quick:
        sec.notes.append(
            "CPU: the attention comparison (the two variants in turns, median of 2 after a "
            "warm-up) and the relight cost (one call each, not warmed up); the rest are GPU "
            "measurements: `python -m benchmarks --device cuda`"
        )
    return sec
