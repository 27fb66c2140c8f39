"""CPU dtype: Stable Diffusion in float32 against bfloat16 on this CPU, speed and closeness.

What :func:`sdsam_nb.pick_dtype`'s CPU choice rests on; what is measured and the targets:
README.md. Both dtypes of the full-size SD v1-4 architecture (random weights) are held side by
side and make a subject and an inpainting of float32's subject in turns (:func:`harness.in_turns`)
after an untimed warm-up, in a fresh process that flushes subnormal floats to zero. A CPU
measurement (skipped on a GPU); ``--quick``: the tiny SD at 64 px, 2 steps.
"""

from __future__ import annotations

import math
import sys
from functools import partial

import numpy as np
import torch

from . import harness as h

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

    ctx = h.Context(device=torch.device("cpu"), quick=quick)
    folder, size = str(sd_folder(quick)), cfg["size"]
    mask = h.disc_mask(size, size)
    kw = {"device": "cpu", "safety_checker": False, "progress": False}
    loads: dict[str, float] = {}
    pipes = {}
    for name in h.DTYPES:
        with ctx.timing(loads, name):
            pipes[name] = sdsam_nb.load_sd(folder, dtype=name, **kw)

    def subject(name: str, steps: int, seed: int = 0):
        kw = {"steps": steps, "width": size, "height": size, "cache": False}
        return generate(pipes[name], PROMPT, seed=seed, **kw)[0]

    def inpainting(name: str, steps: int, picture):
        kw = {"seed": 0, "steps": steps, "size": size, "keep_subject": False}
        return inpaint_background(pipes[name], picture, mask, BACKGROUND_PROMPT, **kw)[0]

    if warm := cfg["warmup_steps"]:  # a first CPU call at a new shape and dtype is slower
        ctx.log(f"{NAME}: warm-up ({warm} steps each)")
        for name in h.DTYPES:
            inpainting(name, warm, subject(name, warm))
    steps, pictures = cfg["steps"], {}
    base = subject("float32", steps)  # untimed: the picture both dtypes inpaint

    def keep(task: str, name: str):  # in_turns' task: the call to time in dtype ``name``
        def call():
            picture = subject(name, steps) if task == "subject" else inpainting(name, steps, base)
            pictures[(name, task)] = np.asarray(picture)

        return call

    ctx.log(f"{NAME}: {cfg['reps']} turns of {', '.join(h.DTYPES)} x {', '.join(TASKS)}")
    turns = h.in_turns(ctx, {task: partial(keep, task) for task in TASKS}, cfg["reps"])
    # for scale: two unrelated float32 pictures
    unrelated = closeness(np.asarray(base), np.asarray(subject("float32", steps, seed=1)))
    close = {
        task: closeness(pictures[("float32", task)], pictures[("bfloat16", task)]) for task in TASKS
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


def report(sec, ctx: h.Context, cfg: dict, m: dict) -> None:
    """The rows and notes of :func:`measure`'s result ``m``."""
    speedups = [h.dtype_rows(sec, ctx, m["seconds"], task) for task in TASKS]
    for task in TASKS:
        c = m["closeness"][task]
        psnr = math.inf if c["psnr"] is None else c["psnr"]
        note = f"mean |difference| {c['mean_abs']:.2f}, max {c['max_abs']:.0f} (0..255)"
        target = h.judged(psnr, "≥", TARGET_PSNR, ctx, f"≥ {TARGET_PSNR:.0f} dB")
        what = f"{task}: PSNR of bfloat16's picture against float32's"
        sec.add(what, psnr, "dB", note=note, **target)
    u = m["unrelated_subjects"]
    note = f"for scale; mean |difference| {u['mean_abs']:.2f}, max {u['max_abs']:.0f}"
    sec.add("PSNR between two float32 subjects of seeds 0 and 1", u["psnr"], "dB", note=note)
    faster = all(s >= h.FASTER for s in speedups)
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
    warm, model = cfg["warmup_steps"], "full-size SD v1-4 architecture, random weights"
    sec.notes.append(
        f"{'the tiny SD (quick: its numbers mean nothing)' if ctx.quick else model}, held in both "
        f"dtypes at once, loaded with sdsam_nb.load_sd(dtype=...); {cfg['size']}x{cfg['size']} "
        f"px, DPM-Solver++ {cfg['steps']} steps, guidance 7.5, seed 0; the inpainting repaints "
        f"around a central disc of float32's subject (inpaint_background, keep_subject=False, "
        f"size {cfg['size']}); "
        + (f"an untimed {warm}-step warm-up of each, then " if warm else "no warm-up, ")
        + f"{cfg['reps']} turn(s) float32, bfloat16 (median); {m['threads']} torch threads"
        + ("" if ctx.quick else ", one fresh process flushing subnormal floats to zero")
        + h.busy(m.get("other_cpu_share"))
    )


def run(ctx: h.Context):
    return h.dtype_benchmark(ctx, sys.modules[__name__], "the kit's dtype is float16", 5400)
