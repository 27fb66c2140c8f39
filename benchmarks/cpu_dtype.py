"""CPU dtype: Stable Diffusion in float32 against bfloat16 on this CPU, speed and closeness.

What :func:`sdsam_nb.pick_dtype` rests on: it gives bfloat16 on a CPU with native bfloat16
(``avx512_bf16`` or ``amx_bf16``) only because such a CPU ran SD faster in it, with pictures
close to float32's. Both dtypes of the full-size SD v1-4 architecture (random weights,
:func:`benchmarks.fullsize.sd_folder`) are loaded with ``sdsam_nb.load_sd(dtype=...)`` and held
side by side; after an untimed warm-up each makes, in turns (float32, bfloat16, float32, ...),
a subject (``generate``, 256 px, the default 25 DPM-Solver++ steps) and an inpainting of that
subject's background (``inpaint_background`` of float32's subject and a central disc as the
mask, ``keep_subject=False``), same seeds. Reported: seconds (median over the turns), the
speed-up, and how far bfloat16's decoded pictures are from float32's (mean and max absolute
difference in 0..255, PSNR), with, for scale, the PSNR between two float32 subjects of
different seeds. Random weights make the pictures noise-like: closeness is a numeric check
of the arithmetic, not a judgement of quality. In a fresh process that flushes subnormal
floats to zero (:data:`benchmarks.harness.FLUSH_DENORMAL_NOTE`); a CPU measurement (on a GPU
the kit's dtype is fp16 and this is skipped). ``--quick``: the tiny SD at 64 px, 2 steps.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .harness import Context, OtherLoad, Section, interleaved, judged, median, run_worker

NAME = "cpu_dtype"
TITLE = "CPU dtype: Stable Diffusion in float32 vs bfloat16 (speed, closeness of the pictures)"
PROMPT = "a red teapot on a white table, studio photo"
BACKGROUND_PROMPT = "on a beach at sunset"
DTYPES = ("float32", "bfloat16")
TASKS = ("subject", "inpainting")
TARGET_SPEEDUP = 1.1  # bfloat16 counts as faster when it saves at least a tenth of the time
TARGET_PSNR = 30.0  # dB: bfloat16's picture counts as close to float32's from here
CPU_SETTINGS = {"size": 256, "steps": 25, "reps": 2, "warmup_steps": 2}
QUICK_SETTINGS = {"size": 64, "steps": 2, "reps": 1, "warmup_steps": 0}


def closeness(a: np.ndarray, b: np.ndarray) -> dict:
    """Mean and max absolute difference (0..255) and PSNR in dB (``inf`` when equal) of two
    HxWx3 uint8 pictures."""
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    mse = float((diff**2).mean())
    psnr = math.inf if mse == 0 else 10 * math.log10(255**2 / mse)
    return {"mean_abs": float(diff.mean()), "max_abs": float(diff.max()), "psnr": psnr}


def _disc(size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return (xx - size / 2) ** 2 + (yy - size / 2) ** 2 < (size / 4) ** 2


def measure(cfg: dict, quick: bool = False) -> dict:
    """Load SD in both dtypes, warm up, time the tasks in turns; seconds per dtype and task,
    the pictures' closeness, what ``pick_dtype`` chooses here, the CPU share other processes
    used. JSON-ready (``psnr`` may be ``inf``, written as ``None``)."""
    import sdsam_nb
    from sdsam_nb.background import generate, inpaint_background
    from sdsam_nb.models.devices import CPU_BF16_FLAGS, cpu_flags

    from .fullsize import sd_folder

    ctx = Context(device=torch.device("cpu"), quick=quick)
    folder, size, mask = str(sd_folder(quick)), cfg["size"], _disc(cfg["size"])
    pipes, loads = {}, {}
    for name in DTYPES:
        with ctx.timing(loads, name):
            pipes[name] = sdsam_nb.load_sd(
                folder, device="cpu", dtype=name, safety_checker=False, progress=False
            )
    pictures: dict[tuple[str, str], np.ndarray] = {}
    subject = {}  # float32's subject: what both dtypes inpaint

    def subject_call(name: str, steps: int, seed: int = 0):
        def call():
            kw = {"seed": seed, "steps": steps, "width": size, "height": size, "cache": False}
            picture = generate(pipes[name], PROMPT, **kw)[0]
            pictures[(name, "subject")] = np.asarray(picture)
            if name == "float32":
                subject.setdefault("picture", picture)

        return call

    def inpaint_call(name: str, steps: int):
        def call():
            picture = inpaint_background(
                pipes[name],
                subject["picture"],
                mask,
                BACKGROUND_PROMPT,
                seed=0,
                steps=steps,
                size=size,
                keep_subject=False,
            )[0]
            pictures[(name, "inpainting")] = np.asarray(picture)

        return call

    if cfg["warmup_steps"]:  # a first CPU call at a new shape and dtype is slower
        ctx.log(f"{NAME}: warm-up ({cfg['warmup_steps']} steps each)")
        for name in DTYPES:
            subject_call(name, cfg["warmup_steps"])()
        for name in DTYPES:
            inpaint_call(name, cfg["warmup_steps"])()
        subject.clear()
    subject_call("float32", cfg["steps"])()  # untimed: the picture both dtypes inpaint
    ctx.log(f"{NAME}: {cfg['reps']} turns of {', '.join(DTYPES)} x {', '.join(TASKS)}")
    cases = {}
    for name in DTYPES:
        cases[f"{name} subject"] = lambda name=name: subject_call(name, cfg["steps"])
        cases[f"{name} inpainting"] = lambda name=name: inpaint_call(name, cfg["steps"])
    with OtherLoad() as load:
        times = interleaved(cases, ctx, cfg["reps"], 0)
    other_seed = subject_call("float32", cfg["steps"], seed=1)
    kept = pictures[("float32", "subject")]
    other_seed()  # for scale: how far apart two unrelated float32 pictures are
    unrelated = closeness(kept, pictures[("float32", "subject")])
    close = {
        task: closeness(
            kept if task == "subject" else pictures[("float32", task)], pictures[("bfloat16", task)]
        )
        for task in TASKS
    }
    flags = cpu_flags()
    return {
        "loads": loads,
        "seconds": times,
        "closeness": close,
        "unrelated_subjects": unrelated,
        "pick_dtype": str(sdsam_nb.pick_dtype(torch.device("cpu"))).removeprefix("torch."),
        "native_bf16_flags": [f for f in CPU_BF16_FLAGS if f in flags],
        "threads": torch.get_num_threads(),
        "other_cpu_share": load.share,
    }


def report(ctx: Context, cfg: dict, m: dict) -> Section:
    """The section for :func:`measure`'s result ``m``."""
    sec = Section(NAME, TITLE)
    speedups = {}
    for task in TASKS:
        s32, s16 = (median(m["seconds"][f"{name} {task}"]) for name in DTYPES)
        sec.add(f"{task}: float32", s32, "s")
        sec.add(f"{task}: bfloat16", s16, "s")
        speedups[task] = s32 / s16
        target = judged(speedups[task], "≥", TARGET_SPEEDUP, ctx)
        sec.add(f"{task}: bfloat16 speed-up over float32", speedups[task], "x", **target)
    for task in TASKS:
        c = m["closeness"][task]
        psnr = math.inf if c["psnr"] is None else c["psnr"]
        note = f"mean |difference| {c['mean_abs']:.2f}, max {c['max_abs']:.0f} (0..255)"
        target = judged(psnr, "≥", TARGET_PSNR, ctx, f"≥ {TARGET_PSNR:.0f} dB")
        sec.add(
            f"{task}: PSNR of bfloat16's picture against float32's", psnr, "dB", note=note, **target
        )
    u = m["unrelated_subjects"]
    note = f"for scale; mean |difference| {u['mean_abs']:.2f}, max {u['max_abs']:.0f}"
    sec.add("PSNR between two float32 subjects of seeds 0 and 1", u["psnr"], "dB", note=note)
    faster = all(s >= TARGET_SPEEDUP for s in speedups.values())
    close = all((c["psnr"] is None or c["psnr"] >= TARGET_PSNR) for c in m["closeness"].values())
    verdict = "bfloat16" if (m["native_bf16_flags"] and faster and close) else "float32"
    agrees = m["pick_dtype"] == verdict
    note = (
        f"pick_dtype(cpu) gives {m['pick_dtype']} here; this run's verdict: {verdict} "
        f"(native bfloat16 flags: {', '.join(m['native_bf16_flags']) or 'none'}; faster: "
        f"{'yes' if faster else 'no'}; close: {'yes' if close else 'no'})"
    )
    sec.add(
        "the kit's automatic CPU dtype follows this measurement",
        agrees,
        "bool",
        target="yes",
        met=None if ctx.quick else agrees,
        note=note,
    )
    busy = m.get("other_cpu_share")
    model = (
        "the tiny SD (quick: its numbers mean nothing)"
        if ctx.quick
        else ("full-size SD v1-4 architecture, random weights")
    )
    warm = cfg["warmup_steps"]
    sec.notes.append(
        f"{model}, held in both dtypes at once, loaded with sdsam_nb.load_sd(dtype=...); "
        f"{cfg['size']}x{cfg['size']} px, DPM-Solver++ {cfg['steps']} steps, guidance 7.5, "
        f"seed 0; the inpainting repaints around a central disc of float32's subject "
        f"(inpaint_background, keep_subject=False, size {cfg['size']}); "
        + (f"an untimed {warm}-step warm-up of each, then " if warm else "no warm-up, ")
        + f"{cfg['reps']} turn(s) float32, bfloat16 (median); {m['threads']} torch threads"
        + ("" if ctx.quick else ", one fresh process flushing subnormal floats to zero")
        + (f"; share of the CPU other processes used: {busy:.0%}" if busy is not None else "")
    )
    sec.notes.append(
        "random weights make every picture noise-like: the PSNR rows check that bfloat16's "
        "arithmetic stays near float32's for the same seed and prompt, not that either picture "
        "is good; trained weights give other pictures, whose closeness is not measured here. "
        f"Targets: faster by at least {TARGET_SPEEDUP}x and PSNR at least {TARGET_PSNR:.0f} dB "
        "for both tasks; pick_dtype gives bfloat16 on CPUs with native bfloat16 only if both "
        "hold"
    )
    sec.extra.update(m, settings=cfg)
    return sec


def run(ctx: Context) -> Section:
    if ctx.cuda:
        return Section(NAME, TITLE).skip(
            "a CPU measurement (on a GPU the kit's dtype is float16): run with --device cpu"
        )
    cfg = dict(QUICK_SETTINGS if ctx.quick else CPU_SETTINGS)
    if ctx.quick:
        return report(ctx, cfg, measure(cfg, quick=True))
    ctx.log(
        f"{NAME}: full-size SD at {cfg['size']} px, {cfg['steps']} steps, float32 and bfloat16 "
        f"x {cfg['reps']} turns, in a fresh process: about 15 minutes on 2 idle cores"
    )
    target = "benchmarks.cpu_dtype:measure"
    return report(ctx, cfg, run_worker(target, {"cfg": cfg}, timeout=5400, flush_denormal=True))
