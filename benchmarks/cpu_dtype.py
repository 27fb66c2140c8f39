"""CPU dtype: Stable Diffusion in float32 against bfloat16 on this CPU, speed and closeness.

What :func:`sdsam_nb.pick_dtype`'s CPU choice rests on; what is measured and the targets:
README.md. Both dtypes of the full-size SD v1-4 architecture (random weights) are held side by
side and make a subject and an inpainting of float32's subject in turns (:func:`harness.in_turns`)
after an untimed warm-up, in a fresh process that flushes subnormal floats to zero. A CPU
measurement (skipped on a GPU); ``--quick``: the tiny SD at 64 px, 2 steps.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .harness import (
    DTYPES,
    FASTER,
    Context,
    Section,
    disc_mask,
    dtype_rows,
    in_turns,
    judged,
    measured,
)

NAME = "cpu_dtype"
TITLE = "CPU dtype: Stable Diffusion in float32 vs bfloat16 (speed, closeness of the pictures)"
PROMPT = "a red teapot on a white table, studio photo"
BACKGROUND_PROMPT = "on a beach at sunset"
TASKS = ("subject", "inpainting")
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


def measure(cfg: dict, quick: bool = False) -> dict:
    """Load SD in both dtypes, warm up, time the tasks in turns; seconds per dtype and task,
    the pictures' closeness, what ``pick_dtype`` chooses here, the CPU share other processes
    used. JSON-ready (``psnr`` may be ``inf``, written as ``None``)."""
    import sdsam_nb
    from sdsam_nb.background import generate, inpaint_background
    from sdsam_nb.models.devices import CPU_BF16_FLAGS, cpu_flags

    from .fullsize import sd_folder

    ctx = Context(device=torch.device("cpu"), quick=quick)
    folder, size = str(sd_folder(quick)), cfg["size"]
    mask = disc_mask(size, size)
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
            kw = {"seed": 0, "steps": steps, "size": size, "keep_subject": False}
            picture = inpaint_background(
                pipes[name], subject["picture"], mask, BACKGROUND_PROMPT, **kw
            )[0]
            pictures[(name, "inpainting")] = np.asarray(picture)

        return call

    if cfg["warmup_steps"]:  # a first CPU call at a new shape and dtype is slower
        ctx.log(f"{NAME}: warm-up ({cfg['warmup_steps']} steps each)")
        for make in (subject_call, inpaint_call):
            for name in DTYPES:
                make(name, cfg["warmup_steps"])()
        subject.clear()
    subject_call("float32", cfg["steps"])()  # untimed: the picture both dtypes inpaint
    ctx.log(f"{NAME}: {cfg['reps']} turns of {', '.join(DTYPES)} x {', '.join(TASKS)}")
    steps = cfg["steps"]
    turns = in_turns(
        ctx,
        {
            "subject": lambda d: subject_call(d, steps),
            "inpainting": lambda d: inpaint_call(d, steps),
        },
        cfg["reps"],
    )
    kept = pictures[("float32", "subject")]
    subject_call("float32", steps, seed=1)()  # for scale: two unrelated float32 pictures
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
        **turns,
        "closeness": close,
        "unrelated_subjects": unrelated,
        "pick_dtype": str(sdsam_nb.pick_dtype(torch.device("cpu"))).removeprefix("torch."),
        "native_bf16_flags": [f for f in CPU_BF16_FLAGS if f in flags],
    }


def report(ctx: Context, cfg: dict, m: dict) -> Section:
    """The section for :func:`measure`'s result ``m``."""
    sec = Section(NAME, TITLE)
    speedups = [dtype_rows(sec, ctx, m["seconds"], task) for task in TASKS]
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
    faster = all(s >= FASTER for s in speedups)
    close = all((c["psnr"] is None or c["psnr"] >= TARGET_PSNR) for c in m["closeness"].values())
    verdict = "bfloat16" if (m["native_bf16_flags"] and faster and close) else "float32"
    agrees = m["pick_dtype"] == verdict
    note = (
        f"pick_dtype(cpu) gives {m['pick_dtype']} here; this run's verdict: {verdict} "
        f"(native bfloat16 flags: {', '.join(m['native_bf16_flags']) or 'none'}; faster: "
        f"{'yes' if faster else 'no'}; close: {'yes' if close else 'no'})"
    )
    what = "the kit's automatic CPU dtype follows this measurement"
    sec.add(what, agrees, "bool", target="yes", met=None if ctx.quick else agrees, note=note)
    busy, warm = m.get("other_cpu_share"), cfg["warmup_steps"]
    model = "full-size SD v1-4 architecture, random weights"
    sec.notes.append(
        f"{'the tiny SD (quick: its numbers mean nothing)' if ctx.quick else model}, held in both "
        f"dtypes at once, loaded with sdsam_nb.load_sd(dtype=...); {cfg['size']}x{cfg['size']} "
        f"px, DPM-Solver++ {cfg['steps']} steps, guidance 7.5, seed 0; the inpainting repaints "
        f"around a central disc of float32's subject (inpaint_background, keep_subject=False, "
        f"size {cfg['size']}); "
        + (f"an untimed {warm}-step warm-up of each, then " if warm else "no warm-up, ")
        + f"{cfg['reps']} turn(s) float32, bfloat16 (median); {m['threads']} torch threads"
        + ("" if ctx.quick else ", one fresh process flushing subnormal floats to zero")
        + (f"; share of the CPU other processes used: {busy:.0%}" if busy is not None else "")
    )
    sec.notes.append(
        "random weights make every picture noise-like: the PSNR rows check that bfloat16's "
        "arithmetic stays near float32's for the same seed and prompt, not that either picture "
        "is good; trained weights give other pictures, whose closeness is not measured here. "
        f"Targets: faster by at least {FASTER}x and PSNR at least {TARGET_PSNR:.0f} dB "
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
    if not ctx.quick:
        ctx.log(
            f"{NAME}: full-size SD at {cfg['size']} px, {cfg['steps']} steps, float32 and "
            f"bfloat16 x {cfg['reps']} turns, in a fresh process: about 15 minutes on 2 idle cores"
        )
    kwargs = {"cfg": cfg, "quick": ctx.quick}
    return report(ctx, cfg, measured(ctx, "benchmarks.cpu_dtype:measure", kwargs, timeout=5400))
