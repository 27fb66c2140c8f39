"""Weight sharing: memory of text-to-image + inpainting + img2img through our loaders.

Each variant of :data:`VARIANTS` loads in a fresh Python process (one variant's memory cannot
hide in another's) and reads one element per memory page of every weight (:func:`touch`), as a
first inference would. What is measured, dtypes and targets: README.md. ``--quick``: the tiny
models, all variants in this process, weight bytes only.
"""

from __future__ import annotations

import time

import torch

# imported with the module: a worker's "before load" is Python + torch + diffusers + sdsam_nb
from diffusers import (
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
)

import sdsam_nb

from .harness import Context, Section, judged, run_worker, status_kb

NAME = "weight_sharing"
TITLE = "Weight sharing: text-to-image + inpainting + img2img in memory"
VARIANTS = {
    "a": "load_sd alone",
    "b": "load_sd + inpainting + img2img (shared)",
    "c": "3 pipelines, each from_pretrained",
    "d": "load_sd + dedicated inpainting checkpoint (text encoder, VAE shared)",
    "e": "load_sd + dedicated inpainting checkpoint, from_pretrained (nothing shared)",
}
TARGET_SHARED = 1.05


def _tensors(pipes):
    """Every parameter and buffer of every ``nn.Module`` component of ``pipes``."""
    for pipe in pipes:
        for module in pipe.components.values():
            if isinstance(module, torch.nn.Module):
                yield from (*module.parameters(), *module.buffers())


def weight_bytes(pipes) -> int:
    """Bytes of the distinct tensors (parameters and buffers) of all ``pipes``' modules."""
    storages = {(t.device.type, t.untyped_storage().data_ptr()): t for t in _tensors(pipes)}
    return sum(t.untyped_storage().nbytes() for t in storages.values())


def touch(pipes) -> None:
    """Read one element per memory page of every CPU weight, as a first inference would:
    ``from_pretrained`` maps safetensors files lazily, and weights loaded in the file's own
    dtype are not resident (nor in the RSS) until first used."""
    seen = set()
    for t in _tensors(pipes):
        key = t.untyped_storage().data_ptr()
        if t.device.type == "cpu" and key not in seen and t.numel():
            seen.add(key)
            float(t.detach().reshape(-1)[:: max(1, 4096 // t.element_size())].float().sum())


def load_variant(variant: str, folder: str, device: str, dtype: torch.dtype, inpainting: str):
    """Load ``variant``'s pipelines (:data:`VARIANTS`) and return them as a list."""
    kw = {"dtype": dtype, "low_cpu_mem_usage": True, "safety_checker": None}
    kw.update(feature_extractor=None, requires_safety_checker=False)
    if variant == "c":
        classes = (
            StableDiffusionPipeline,
            StableDiffusionInpaintPipeline,
            StableDiffusionImg2ImgPipeline,
        )
        return [cls.from_pretrained(folder, **kw).to(device) for cls in classes]
    pipe = sdsam_nb.load_sd(
        folder, device=device, dtype=dtype, safety_checker=False, progress=False
    )
    if variant == "b":
        return [pipe, sdsam_nb.inpainting(pipe), sdsam_nb.img2img(pipe)]
    if variant == "d":
        return [pipe, sdsam_nb.inpainting(pipe, inpainting)]
    if variant == "e":
        return [pipe, StableDiffusionInpaintPipeline.from_pretrained(inpainting, **kw).to(device)]
    return [pipe]


def measure(variant: str, folder: str, device: str, dtype: str, inpainting: str) -> dict:
    """Load ``variant`` in this process; its memory figures (bytes) and load time."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    rss_before = (status_kb("VmRSS") or 0) * 1024
    start = time.perf_counter()
    pipes = load_variant(variant, folder, device, getattr(torch, dtype), inpainting)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - start
    touch(pipes)
    hwm, pss = status_kb("VmHWM"), status_kb("Pss", "smaps_rollup")
    return {
        "variant": variant,
        "pipelines": len(pipes),
        "asked_dtype": dtype,
        "unet_dtypes": [str(p.unet.dtype).removeprefix("torch.") for p in pipes],
        "load_s": seconds,
        "weight_bytes": weight_bytes(pipes),
        "rss_before_load": rss_before,
        "rss_peak": None if hwm is None else hwm * 1024,
        "rss_anon_end": (status_kb("RssAnon") or 0) * 1024,
        "rss_file_end": (status_kb("RssFile") or 0) * 1024,
        "pss_end": None if pss is None else pss * 1024,
        "gpu_peak_allocated": torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None,
    }


def run(ctx: Context) -> Section:
    from .fullsize import dir_size_gb, sd_folder, sd_inpainting_folder

    sec = Section(NAME, TITLE)
    # fp16 on a GPU, as the notebooks load SD there; bf16 on the CPU: copies, as on a GPU (in
    # the file's own dtype separately loaded pipelines cost no more than one: PSS (c)/(a) = 1.0)
    dtype = "float16" if ctx.cuda else "bfloat16"
    folder, inpainting = sd_folder(ctx.quick), sd_inpainting_folder(ctx.quick)
    results = {}
    for v in VARIANTS:
        args = {"variant": v, "folder": str(folder), "device": str(ctx.device), "dtype": dtype}
        args["inpainting"] = str(inpainting)
        if ctx.quick:
            sdsam_nb.clear_loaded()
            # one process for every variant: peaks are not separable
            results[v] = {**measure(**args), "rss_peak": None}
        else:
            ctx.log(f"{NAME}: variant {v} ({VARIANTS[v]}) in a fresh process")
            results[v] = run_worker("benchmarks.weight_sharing:measure", args, timeout=900)
    if ctx.quick:
        sdsam_nb.clear_loaded()
        sec.notes.append("quick: tiny model, all variants in one process; weight bytes only")
    else:
        sec.notes.append(
            f"full-size SD v1-4 architecture, random weights, loaded as {dtype} (why: README.md) "
            f"from a {dir_size_gb(folder):.1f} GB fp16 folder; no safety checker; one fresh "
            "process per variant; peak = VmHWM (peak RSS of the process, imports and transient "
            "file pages included); PSS = memory held once loaded"
        )
    sec.extra["variants"] = results
    for v, r in results.items():
        if changed := sorted({d for d in r["unet_dtypes"] if d != r["asked_dtype"]}):
            sec.notes.append(
                f"({v}) asked for {r['asked_dtype']} but the UNet is {', '.join(changed)} after "
                "loading: diffusers' from_pipe casts the shared modules to its own default "
                "(float32) unless given dtype=, which also changes the first pipeline"
            )

    def ratio(key: str, v: str) -> float:
        return results[v][key] / results["a"][key]

    def each(what: str, key: str, unit: str = "GB", scale: float = 1e9) -> None:
        for v, r in results.items():
            sec.add(f"({v}) {what}", r[key] / scale, unit)

    def shared(metric: str, key: str) -> None:  # (b)/(a), the target, and (c)/(a)
        b = ratio(key, "b")
        sec.add(f"{metric} (b)/(a)", b, "x", **judged(b, "≤", TARGET_SHARED, ctx))
        sec.add(f"{metric} (c)/(a)", ratio(key, "c"), "x")

    for v, r in results.items():
        sec.add(f"({v}) {VARIANTS[v]}: distinct weights", r["weight_bytes"] / 1e9, "GB")
    shared("weights", "weight_bytes")
    sec.add("weights (d)/(a): dedicated checkpoint, shared", ratio("weight_bytes", "d"), "x")
    sec.add("weights (e)/(a): dedicated checkpoint, not shared", ratio("weight_bytes", "e"), "x")
    saved = (results["e"]["weight_bytes"] - results["d"]["weight_bytes"]) / 1e9
    sec.add("dedicated checkpoint: saved by sharing (e) - (d)", saved, "GB")
    a = results["a"]
    if a["rss_peak"] is not None:
        each("peak RSS", "rss_peak")
        sec.add("RSS after imports, before loading", a["rss_before_load"] / 1e9, "GB")
        shared("peak RSS", "rss_peak")
        if a["pss_end"]:
            each("memory held after loading (PSS)", "pss_end")
            for v in "bcde":
                sec.add(f"PSS ({v})/(a)", ratio("pss_end", v), "x")
        each("load time", "load_s", "s", 1)
    if ctx.cuda and a["gpu_peak_allocated"]:
        each("peak GPU memory allocated", "gpu_peak_allocated")
        shared("peak GPU", "gpu_peak_allocated")
    return sec
