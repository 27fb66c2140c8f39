"""Speed-ups, each measured against its baseline and kept only if it holds.

On a GPU (full-size SD v1-4 in fp16 and SAM vit_h, random weights):

* attention: PyTorch SDPA (``AttnProcessor2_0``, diffusers' default) against the classic
  ``AttnProcessor``: one UNet forward, batch 2 (classifier-free guidance), 64x64 latents;
* scheduler: DPM-Solver++ (multistep) at 25 and 20 steps against PNDM at 50 (SD v1-4's
  default), a whole 512x512 text-to-image call. Random weights cannot show whether the
  pictures are as good: only the time is measured here;
* SAM image encoder in fp16 (the decoder stays fp32; :func:`half_image_encoder`) against
  fp32: ``set_image`` time and the masks of the same clicks, IoU ≥ 0.99 to keep it;
* ``channels_last`` memory format for the UNet;
* ``torch.compile`` of the UNet (an option: its compile time is reported);
* ``enable_model_cpu_offload()`` (an option for small GPUs): peak GPU memory and time of a
  25-step call against the pipeline resident on the GPU.

"keep" means at least :data:`KEEP` times faster (or, for the SAM fp16 encoder, masks that
agree with fp32: IoU ≥ 0.99, and not slower). On the CPU only the attention comparison is
meaningful: one forward of the full-size UNet at 512x512 (64x64 latents, batch 2), fp32.
``--quick`` runs the same code paths on the tiny models (numbers meaningless).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

import numpy as np
import torch

from .harness import Context, Section, median

NAME = "speedups"
TITLE = "Speed-ups: attention, scheduler, SAM fp16, channels_last, compile, CPU offload"
KEEP = 1.05  # at least 5 % faster to keep a speed-up
IOU_MIN = 0.99
PROMPT = "a red teapot on a wooden table, studio photo"


# --------------------------------------------------------------------------- helpers


def half_image_encoder(sam, dtype: torch.dtype = torch.float16):
    """Run ``sam``'s image encoder in ``dtype``; everything else stays as it is (fp32).

    The encoder's weights are cast in place; hooks cast its input to ``dtype`` and its output
    (the ``1x256x64x64`` embedding) back to the decoder's dtype, so ``SamPredictor`` works
    unchanged. Returns ``sam``. Undo with :func:`full_image_encoder`.
    """
    enc = sam.image_encoder
    out_dtype = next(sam.mask_decoder.parameters()).dtype
    enc.to(dtype)
    pre = enc.register_forward_pre_hook(lambda m, args: (args[0].to(dtype), *args[1:]))
    post = enc.register_forward_hook(lambda m, args, out: out.to(out_dtype))
    enc._sdsam_hooks = (pre, post)
    return sam


def full_image_encoder(sam):
    """Undo :func:`half_image_encoder`: fp32 encoder, hooks removed."""
    enc = sam.image_encoder
    for hook in getattr(enc, "_sdsam_hooks", ()):
        hook.remove()
    enc._sdsam_hooks = ()
    enc.float()
    return sam


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks; 1.0 when both are empty."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def time_reps(fn: Callable[[], object], ctx: Context, reps: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    ctx.sync()
    out = []
    for _ in range(reps):
        ctx.sync()
        start = time.perf_counter()
        fn()
        ctx.sync()
        out.append(time.perf_counter() - start)
    return out


def _free(ctx: Context) -> None:
    import sdsam_nb

    sdsam_nb.clear_loaded()
    gc.collect()
    if ctx.cuda:
        torch.cuda.empty_cache()


def _unet_inputs(unet, batch: int, latent: int, ctx: Context, dtype: torch.dtype):
    g = torch.Generator("cpu").manual_seed(0)
    sample = torch.randn(batch, unet.config.in_channels, latent, latent, generator=g)
    text = torch.randn(batch, 77, unet.config.cross_attention_dim, generator=g)
    t = torch.tensor([500] * batch)
    return (
        sample.to(ctx.device, dtype),
        t.to(ctx.device),
        text.to(ctx.device, dtype),
    )


def _forward(unet, inputs) -> Callable[[], object]:
    sample, t, text = inputs

    def call():
        with torch.inference_mode():
            return unet(sample, t, encoder_hidden_states=text).sample

    return call


def _judge(sec: Section, ctx: Context, metric: str, speedup: float, note: str = "") -> None:
    keep = speedup >= KEEP
    sec.add(
        metric,
        speedup,
        "x",
        target=f"≥ {KEEP} to keep",
        met=None if ctx.quick else keep,
        note=note,
    )
    sec.extra.setdefault("decisions", {})[metric] = "keep" if keep else "drop"


# --------------------------------------------------------------------------- the measurements


def interleaved(
    cases: dict[str, Callable[[], Callable[[], object]]], ctx: Context, reps: int, warmup: int
) -> dict[str, list[float]]:
    """Time several variants in turns (A, B, A, B, ...), so that other work on a shared
    machine slows them alike. ``cases[name]()`` prepares a variant (not timed) and returns the
    call to time. Returns the timed seconds per variant."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for rep in range(warmup + reps):
        for name, prepare in cases.items():
            call = prepare()
            ctx.sync()
            start = time.perf_counter()
            call()
            ctx.sync()
            if rep >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def attention(sec: Section, ctx: Context, pipe, dtype) -> None:
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    unet = pipe.unet
    if ctx.quick:
        batch, latent, reps, warm = 2, 8, 1, 0
    elif ctx.cuda:
        batch, latent, reps, warm = 2, 64, 10, 3
    else:  # ~10 s a forward on 2 cores: 6 forwards, about a minute
        batch, latent, reps, warm = 2, 64, 2, 1
    forward = _forward(unet, _unet_inputs(unet, batch, latent, ctx, dtype))

    def using(proc) -> Callable[[], Callable[[], object]]:
        def prepare():
            unet.set_attn_processor(proc())
            return forward

        return prepare

    ctx.log(f"{NAME}: UNet forward, classic vs SDPA attention, in turns")
    times = interleaved(
        {
            "classic AttnProcessor": using(AttnProcessor),
            "SDPA AttnProcessor2_0": using(AttnProcessor2_0),
        },
        ctx,
        reps,
        warm,
    )
    unet.set_attn_processor(AttnProcessor2_0())
    med = {name: median(t) for name, t in times.items()}
    for name, t in med.items():
        sec.add(f"UNet forward, {name}", t, "s", note=f"batch {batch}, {latent}x{latent} latents")
    sec.extra["attention_s"] = times
    speedup = med["classic AttnProcessor"] / med["SDPA AttnProcessor2_0"]
    _judge(sec, ctx, "SDPA speed-up over classic attention", speedup, note=f"median of {reps}")


def channels_last(sec: Section, ctx: Context, pipe, dtype) -> None:
    unet = pipe.unet
    batch, latent, reps, warm = (2, 8, 1, 0) if ctx.quick else (2, 64, 10, 3)
    inputs = _unet_inputs(unet, batch, latent, ctx, dtype)
    cl_inputs = (inputs[0].contiguous(memory_format=torch.channels_last), *inputs[1:])

    def default():
        unet.to(memory_format=torch.contiguous_format)
        return _forward(unet, inputs)

    def last():
        unet.to(memory_format=torch.channels_last)
        return _forward(unet, cl_inputs)

    times = interleaved({"default": default, "channels_last": last}, ctx, reps, warm)
    unet.to(memory_format=torch.contiguous_format)
    base, fast = median(times["default"]), median(times["channels_last"])
    sec.add("UNet forward, default layout", base, "s")
    sec.add("UNet forward, channels_last", fast, "s")
    _judge(sec, ctx, "channels_last speed-up", base / fast)


def compiled(sec: Section, ctx: Context, pipe, dtype) -> None:
    unet = pipe.unet
    inputs = _unet_inputs(unet, 2, 64, ctx, dtype)
    base = median(time_reps(_forward(unet, inputs), ctx, 10, 3))
    compiled_unet = torch.compile(unet)
    ctx.log(f"{NAME}: torch.compile of the UNet (first call compiles; a minute or two)")
    start = time.perf_counter()
    _forward(compiled_unet, inputs)()
    ctx.sync()
    compile_s = time.perf_counter() - start
    fast = median(time_reps(_forward(compiled_unet, inputs), ctx, 10, 3))
    sec.add("torch.compile: first call (compiles)", compile_s, "s")
    sec.add("UNet forward, eager", base, "s")
    sec.add("UNet forward, compiled", fast, "s")
    _judge(sec, ctx, "torch.compile speed-up (option)", base / fast)
    del compiled_unet
    torch._dynamo.reset()


def schedulers(sec: Section, ctx: Context, pipe) -> None:
    from sdsam_nb.background import generate

    size = 64 if ctx.quick else 512
    runs = [("pndm", 4 if ctx.quick else 50), ("dpm++", 2 if ctx.quick else 25)]
    if not ctx.quick:
        runs.append(("dpm++", 20))
        generate(pipe, PROMPT, steps=2, width=size, height=size, scheduler="dpm++")  # warm-up
    times = {}
    for name, steps in runs:
        ctx.log(f"{NAME}: text-to-image {size}px, {name} {steps} steps")
        t = time_reps(
            lambda name=name, steps=steps: generate(
                pipe, PROMPT, steps=steps, width=size, height=size, scheduler=name
            ),
            ctx,
            reps=1 if ctx.quick else 3,
            warmup=0,
        )
        times[(name, steps)] = median(t)
        sec.add(f"text-to-image {size}px, {name} {steps} steps", times[(name, steps)], "s")
    base = times[runs[0]]
    for key in runs[1:]:
        _judge(
            sec,
            ctx,
            f"{key[0]} {key[1]} steps speed-up over pndm {runs[0][1]}",
            base / times[key],
            note="time only: random weights cannot judge quality",
        )


def sam_half(sec: Section, ctx: Context) -> None:
    from segment_anything import SamPredictor

    from .click_latency import clicks, test_picture
    from .fullsize import build_sam

    model_type = "tiny" if ctx.quick else ("vit_h" if ctx.cuda else "vit_b")
    half = torch.float16 if ctx.cuda else torch.bfloat16
    half_name = str(half).removeprefix("torch.")
    sam = build_sam(model_type, ctx.device)
    predictor = SamPredictor(sam)
    image = np.asarray(test_picture(512))
    prompts = clicks(5, seed=2)
    reps, warm = (1, 0) if ctx.quick else (5, 2)

    def masks_for() -> list[np.ndarray]:
        out = []
        for x, y, positive in prompts:
            m, _, _ = predictor.predict(
                point_coords=np.array([[x, y]]),
                point_labels=np.array([int(positive)]),
                multimask_output=False,
            )
            out.append(m[0])
        return out

    t32 = median(time_reps(lambda: predictor.set_image(image), ctx, reps, warm))
    emb32 = predictor.features.float().clone()
    m32 = masks_for()
    half_image_encoder(sam, half)
    t16 = median(time_reps(lambda: predictor.set_image(image), ctx, reps, warm))
    emb16 = predictor.features.float()
    m16 = masks_for()
    full_image_encoder(sam)
    ious = [iou(a, b) for a, b in zip(m32, m16, strict=True)]
    rel = float((emb16 - emb32).norm() / emb32.norm().clamp_min(1e-12))
    sec.add(f"SAM {model_type} set_image, fp32", t32, "s")
    sec.add(f"SAM {model_type} set_image, {half_name} encoder", t16, "s")
    sec.add(f"SAM {half_name} encoder: embedding relative error", rel, "")
    min_iou = min(ious)
    sec.add(
        f"SAM {half_name} encoder: min mask IoU vs fp32 ({len(ious)} clicks)",
        min_iou,
        "",
        target=f"≥ {IOU_MIN}",
        met=None if ctx.quick else min_iou >= IOU_MIN,
    )
    keep = min_iou >= IOU_MIN and t32 / t16 >= 1.0
    sec.add(
        f"SAM {half_name} encoder speed-up",
        t32 / t16,
        "x",
        target="≥ 1 and IoU ok to keep",
        met=None if ctx.quick else keep,
    )
    sec.extra.setdefault("decisions", {})["sam_half_encoder"] = "keep" if keep else "drop"
    sec.extra["sam_half_ious"] = ious


def _generate_25(folder, ctx: Context, offloaded: bool) -> tuple[float, int]:
    """(seconds, peak GPU bytes) of a 512px DPM-Solver++ 25-step call, resident or offloaded."""
    import sdsam_nb
    from sdsam_nb.background import generate

    _free(ctx)
    pipe = sdsam_nb.load_sd(  # offload=True is what a user with a small GPU sets
        folder,
        device=ctx.device,
        dtype=torch.float16,
        safety_checker=False,
        progress=False,
        offload=offloaded,
    )
    generate(pipe, PROMPT, steps=2, scheduler="dpm++")  # warm-up
    torch.cuda.reset_peak_memory_stats(ctx.device)
    seconds = time_reps(lambda: generate(pipe, PROMPT, steps=25, scheduler="dpm++"), ctx, 1, 0)
    return seconds[0], torch.cuda.max_memory_allocated(ctx.device)


def offload(sec: Section, ctx: Context, folder) -> None:
    t_res, peak_res = _generate_25(folder, ctx, offloaded=False)
    _free(ctx)
    t_off, peak_off = _generate_25(folder, ctx, offloaded=True)
    _free(ctx)
    sec.add("512px dpm++ 25 steps, resident: time", t_res, "s")
    sec.add("512px dpm++ 25 steps, resident: peak GPU memory", peak_res / 1e9, "GB")
    sec.add("model CPU offload (option): time", t_off, "s")
    sec.add("model CPU offload (option): peak GPU memory", peak_off / 1e9, "GB")
    sec.add("CPU offload: GPU memory saved", (peak_res - peak_off) / 1e9, "GB")


def _guarded(sec: Section, ctx: Context, what: str, fn: Callable[[], None]) -> None:
    """Run one measurement; a failure becomes a note, the others still run."""
    try:
        fn()
    except Exception as exc:  # e.g. torch.compile without a compiler on the machine
        ctx.log(f"{NAME}: {what} failed: {type(exc).__name__}: {exc}")
        sec.add(f"{what}: failed", None, note=f"{type(exc).__name__}: {str(exc)[:120]}")
        _free(ctx)


def run(ctx: Context) -> Section:
    import sdsam_nb

    sec = Section(NAME, TITLE)
    if ctx.quick:
        from sdsam_nb import cache_dir
        from sdsam_nb.models import tiny

        folder = tiny.sd_folder(cache_dir() / "tiny")
    else:
        from .fullsize import sd_v14_folder

        folder = sd_v14_folder()
    dtype = torch.float16 if ctx.cuda else torch.float32
    pipe = sdsam_nb.load_sd(
        folder, device=ctx.device, dtype=dtype, safety_checker=False, progress=False
    )

    _guarded(sec, ctx, "attention", lambda: attention(sec, ctx, pipe, dtype))
    if ctx.cuda or ctx.quick:
        _guarded(sec, ctx, "scheduler", lambda: schedulers(sec, ctx, pipe))
        _guarded(sec, ctx, "channels_last", lambda: channels_last(sec, ctx, pipe, dtype))
        _guarded(sec, ctx, "SAM half encoder", lambda: sam_half(sec, ctx))
        _free(ctx)
    if ctx.cuda:
        _guarded(sec, ctx, "torch.compile", lambda: compiled(sec, ctx, pipe, dtype))
        del pipe
        _guarded(sec, ctx, "CPU offload", lambda: offload(sec, ctx, folder))
    else:
        del pipe
        _free(ctx)
        if not ctx.quick:
            sec.notes.append(
                "CPU: only the attention comparison (full-size UNet, fp32, 64x64 latents = "
                "512 px, batch 2, the two variants in turns, median of 2 after a warm-up); "
                "scheduler, SAM fp16, channels_last, torch.compile and CPU offload are GPU "
                "measurements: `python -m benchmarks --device cuda`"
            )
    if ctx.cuda or ctx.quick:
        sec.notes.append(
            "scheduler rows compare time only; with random weights the pictures are noise, so "
            "whether DPM-Solver++ at 20-25 steps matches PNDM at 50 in quality is not judged here"
        )
    return sec
