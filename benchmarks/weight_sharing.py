"""Weight sharing: memory of text-to-image + inpainting + img2img through our loaders.

Three variants, each measured in a **fresh Python process** (so one variant's memory cannot
hide in another's), on the full-size SD v1-4 architecture with random weights
(:func:`benchmarks.fullsize.sd_v14_folder`, saved once in fp16):

* ``a``: ``sdsam_nb.load_sd(folder)`` alone: the text-to-image pipeline;
* ``b``: ``load_sd`` + ``sdsam_nb.inpainting(pipe)`` + ``sdsam_nb.img2img(pipe)``: all three
  tasks, the way the notebooks load them (``from_pipe``: the same tensors);
* ``c``: ``StableDiffusionPipeline``, ``StableDiffusionInpaintPipeline`` and
  ``StableDiffusionImg2ImgPipeline`` each ``.from_pretrained(folder)``: what a notebook that
  loads every task separately holds;
* ``d``: ``load_sd`` + ``sdsam_nb.inpainting(pipe, model=<dedicated checkpoint>)`` (the
  full-size 9-channel checkpoint of :func:`benchmarks.fullsize.sd_inpainting_folder`, whose
  text encoder, tokenizer and VAE are SD v1's): the kit shares what is the same weights;
* ``e``: ``load_sd`` + ``StableDiffusionInpaintPipeline.from_pretrained(<that checkpoint>)``:
  the same two models with nothing shared.

After loading, one element per memory page of every weight is read (:func:`touch`, as a first
inference would: weights kept in the file's dtype are memory-mapped lazily). Measured per
process: peak resident memory (``VmHWM`` from ``/proc/self/status``: the peak
RSS of this process's own address space; ``ru_maxrss`` is not used because a child started by
``subprocess`` can inherit its parent's peak through ``vfork``+``exec``), the memory held
after loading as PSS (``/proc/self/smaps_rollup``: a file page mapped three times counts
once), the RSS before
loading (Python + torch + diffusers imported), the bytes of distinct weight tensors across
the pipelines (deduplicated by storage pointer: exact and independent of the allocator), the
load time and, on CUDA, ``torch.cuda.max_memory_allocated``. Targets: (b)/(a) ≤ 1.05.

dtype: fp16 on a GPU (as the notebooks load SD). On the CPU bf16: the same 2 bytes a weight,
and a conversion from the fp16 file, so that every pipeline holds its own copy as it does on
a GPU. (Loaded in the file's own dtype on the CPU, the weights stay memory-mapped and the three
separately loaded pipelines share the page cache: they would look free.)

``--quick`` uses the tiny model and measures the three variants in this process (no peak
memory: only the distinct weight bytes), so the smoke test stays fast.

The worker: ``python -m benchmarks.weight_sharing --variant b --folder F --device cpu``
prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from .harness import Context, Section, run_worker

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


def _status_kb(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (Linux), e.g. ``VmHWM``; ``None`` elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _pss_bytes() -> int | None:
    """Proportional set size (Linux): resident pages, each shared page divided among its
    mappings. Three mappings of one file page count once, unlike in the RSS."""
    try:
        for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _peak_rss_bytes() -> int:
    hwm = _status_kb("VmHWM")
    if hwm is not None:
        return hwm * 1024
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS: bytes, Linux: kB


def weight_bytes(pipes) -> int:
    """Bytes of the distinct tensors (parameters and buffers) of all ``pipes``' modules."""
    seen: dict[tuple, int] = {}
    for pipe in pipes:
        for module in pipe.components.values():
            if not isinstance(module, torch.nn.Module):
                continue
            for t in (*module.parameters(), *module.buffers()):
                storage = t.untyped_storage()
                seen[(t.device.type, storage.data_ptr())] = storage.nbytes()
    return sum(seen.values())


def touch(pipes) -> None:
    """Read one element per memory page of every CPU weight, as a first inference would.

    ``from_pretrained`` maps safetensors files into memory lazily: weights loaded in the
    file's own dtype are not resident until first used, and an RSS taken right after loading
    would miss them. Touching them makes the RSS count what the pipelines hold.
    """
    seen = set()
    for pipe in pipes:
        for module in pipe.components.values():
            if not isinstance(module, torch.nn.Module):
                continue
            for t in (*module.parameters(), *module.buffers()):
                key = t.untyped_storage().data_ptr()
                if t.device.type != "cpu" or key in seen or t.numel() == 0:
                    continue
                seen.add(key)
                step = max(1, 4096 // t.element_size())
                float(t.detach().reshape(-1)[::step].float().sum())


def load_variant(
    variant: str, folder: str, device: str, dtype: torch.dtype, inpainting: str | None = None
) -> list:
    """Load ``variant``'s pipelines (see the module docstring) and return them; ``d`` and
    ``e`` need the dedicated ``inpainting`` checkpoint's folder."""
    import sdsam_nb

    if variant in ("a", "b", "d", "e"):
        pipe = sdsam_nb.load_sd(
            folder, device=device, dtype=dtype, safety_checker=False, progress=False
        )
        if variant == "a":
            return [pipe]
        if variant == "d":
            return [pipe, sdsam_nb.inpainting(pipe, inpainting)]
        if variant == "e":
            from diffusers import StableDiffusionInpaintPipeline

            other = StableDiffusionInpaintPipeline.from_pretrained(
                inpainting,
                dtype=dtype,
                low_cpu_mem_usage=True,
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
            )
            return [pipe, other.to(device)]
        return [pipe, sdsam_nb.inpainting(pipe), sdsam_nb.img2img(pipe)]
    if variant == "c":
        from diffusers import (
            StableDiffusionImg2ImgPipeline,
            StableDiffusionInpaintPipeline,
            StableDiffusionPipeline,
        )

        pipes = []
        for cls in (
            StableDiffusionPipeline,
            StableDiffusionInpaintPipeline,
            StableDiffusionImg2ImgPipeline,
        ):
            pipe = cls.from_pretrained(
                folder,
                dtype=dtype,
                low_cpu_mem_usage=True,
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
            )
            pipes.append(pipe.to(device))
        return pipes
    raise ValueError(f"variant must be one of {sorted(VARIANTS)}, not {variant!r}")


def measure_variant(
    variant: str, folder: str, device: str, dtype: torch.dtype, inpainting: str | None = None
) -> dict:
    """Load ``variant`` in this process; return its memory figures (bytes) and load time."""
    # Import everything first, so "before load" is Python + torch + diffusers + sdsam_nb.
    from diffusers import (  # noqa: F401
        StableDiffusionImg2ImgPipeline,
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
    )
    from diffusers.utils import logging as dlogging

    import sdsam_nb  # noqa: F401

    dlogging.set_verbosity_error()
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    rss_before = (_status_kb("VmRSS") or 0) * 1024
    start = time.perf_counter()
    pipes = load_variant(variant, folder, device, dtype, inpainting)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - start
    touch(pipes)
    out = {
        "variant": variant,
        "pipelines": len(pipes),
        "asked_dtype": str(dtype).removeprefix("torch."),
        "unet_dtypes": [str(p.unet.dtype).removeprefix("torch.") for p in pipes],
        "load_s": seconds,
        "weight_bytes": weight_bytes(pipes),
        "rss_before_load": rss_before,
        "rss_peak": _peak_rss_bytes(),
        "rss_anon_end": (_status_kb("RssAnon") or 0) * 1024,
        "rss_file_end": (_status_kb("RssFile") or 0) * 1024,
        "pss_end": _pss_bytes(),
        "gpu_peak_allocated": torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None,
    }
    return out


def _measure_in_subprocess(
    variant: str, folder: Path, ctx: Context, dtype: str, inpainting: Path
) -> dict:
    args = ["--variant", variant, "--folder", str(folder), "--device", str(ctx.device)]
    args += ["--dtype", dtype, "--inpainting-folder", str(inpainting)]
    return run_worker("benchmarks.weight_sharing", args, timeout=900, what=f"variant {variant}")


def run(ctx: Context) -> Section:
    sec = Section(NAME, TITLE)
    # GPU: fp16, as the notebooks load SD there. CPU: bf16, the same 2 bytes a weight, but a
    # conversion from the fp16 file, so each pipeline holds real copies as on a GPU; loaded in
    # the file's own dtype the weights would stay memory-mapped, shared through the page cache,
    # and separately loaded pipelines would cost no more than one (seen: PSS (c)/(a) = 1.0).
    dtype = "float16" if ctx.cuda else "bfloat16"
    if ctx.quick:
        from sdsam_nb import cache_dir, clear_loaded
        from sdsam_nb.models import tiny

        folder = tiny.sd_folder(cache_dir() / "tiny")
        inpainting = tiny.sd_inpainting_folder(cache_dir() / "tiny")
        results = {}
        for v in VARIANTS:
            clear_loaded()
            results[v] = measure_variant(
                v, str(folder), str(ctx.device), getattr(torch, dtype), str(inpainting)
            )
            results[v]["rss_peak"] = None  # one process for all three: peaks are not separable
        clear_loaded()
        sec.notes.append("quick: tiny model, all variants in one process; weight bytes only")
    else:
        from .fullsize import dir_size_gb, sd_inpainting_folder, sd_v14_folder

        folder = sd_v14_folder()
        inpainting = sd_inpainting_folder()
        sec.notes.append(
            f"full-size SD v1-4 architecture, random weights, loaded as {dtype} from a "
            f"{dir_size_gb(folder):.1f} GB fp16 folder; no safety checker; one fresh process "
            "per variant; peak = VmHWM (peak RSS of the process, imports and transient "
            "file pages included); PSS = memory held once loaded"
        )
        if not ctx.cuda:
            sec.notes.append(
                "CPU: bfloat16 (2 bytes a weight, like fp16 on a GPU) so that loading converts "
                "and every pipeline holds real copies, as .to('cuda') makes on a GPU; weights "
                "loaded in the file's own dtype stay memory-mapped and shared by the page cache"
            )
        results = {}
        for v in VARIANTS:
            ctx.log(f"{NAME}: variant {v} ({VARIANTS[v]}) in a fresh process")
            results[v] = _measure_in_subprocess(v, folder, ctx, dtype, inpainting)
    sec.extra["variants"] = results
    a, b, c = results["a"], results["b"], results["c"]

    for v, r in results.items():
        changed = sorted({d for d in r["unet_dtypes"] if d != r["asked_dtype"]})
        if changed:
            sec.notes.append(
                f"({v}) asked for {r['asked_dtype']} but the UNet is {', '.join(changed)} after "
                "loading: diffusers' from_pipe casts the shared modules to its own default "
                "(float32) unless given dtype=, which also changes the first pipeline"
            )
    gb = 1e9
    for v, r in results.items():
        sec.add(f"({v}) {VARIANTS[v]}: distinct weights", r["weight_bytes"] / gb, "GB")
    ratio_w_b = b["weight_bytes"] / a["weight_bytes"]
    ratio_w_c = c["weight_bytes"] / a["weight_bytes"]
    judge = not ctx.quick
    sec.add(
        "weights (b)/(a)",
        ratio_w_b,
        "x",
        target=f"≤ {TARGET_SHARED}",
        met=(ratio_w_b <= TARGET_SHARED) if judge else None,
    )
    sec.add("weights (c)/(a)", ratio_w_c, "x")
    d, e = results["d"], results["e"]
    sec.add(
        "weights (d)/(a): dedicated checkpoint, shared", d["weight_bytes"] / a["weight_bytes"], "x"
    )
    sec.add(
        "weights (e)/(a): dedicated checkpoint, not shared",
        e["weight_bytes"] / a["weight_bytes"],
        "x",
    )
    sec.add(
        "dedicated checkpoint: saved by sharing (e) - (d)",
        (e["weight_bytes"] - d["weight_bytes"]) / 1e9,
        "GB",
    )
    if a["rss_peak"] is not None:
        for v, r in results.items():
            sec.add(f"({v}) peak RSS", r["rss_peak"] / gb, "GB")
        sec.add("RSS after imports, before loading", a["rss_before_load"] / gb, "GB")
        ratio_b = b["rss_peak"] / a["rss_peak"]
        ratio_c = c["rss_peak"] / a["rss_peak"]
        sec.add(
            "peak RSS (b)/(a)",
            ratio_b,
            "x",
            target=f"≤ {TARGET_SHARED}",
            met=(ratio_b <= TARGET_SHARED) if judge else None,
        )
        sec.add("peak RSS (c)/(a)", ratio_c, "x")
        if a.get("pss_end"):
            for v, r in results.items():
                sec.add(f"({v}) memory held after loading (PSS)", r["pss_end"] / gb, "GB")
            sec.add("PSS (b)/(a)", b["pss_end"] / a["pss_end"], "x")
            sec.add("PSS (c)/(a)", c["pss_end"] / a["pss_end"], "x")
            sec.add("PSS (d)/(a)", results["d"]["pss_end"] / a["pss_end"], "x")
            sec.add("PSS (e)/(a)", results["e"]["pss_end"] / a["pss_end"], "x")
        for v, r in results.items():
            sec.add(f"({v}) load time", r["load_s"], "s")
    if ctx.cuda and a.get("gpu_peak_allocated"):
        for v, r in results.items():
            sec.add(f"({v}) peak GPU memory allocated", r["gpu_peak_allocated"] / gb, "GB")
        ratio_g = b["gpu_peak_allocated"] / a["gpu_peak_allocated"]
        sec.add(
            "peak GPU (b)/(a)",
            ratio_g,
            "x",
            target=f"≤ {TARGET_SHARED}",
            met=(ratio_g <= TARGET_SHARED) if judge else None,
        )
        sec.add("peak GPU (c)/(a)", c["gpu_peak_allocated"] / a["gpu_peak_allocated"], "x")
    return sec


def _worker(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Measure one weight-sharing variant.")
    parser.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    parser.add_argument("--folder", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float16")
    parser.add_argument("--inpainting-folder", default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = measure_variant(
        args.variant, args.folder, args.device, getattr(torch, args.dtype), args.inpainting_folder
    )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    _worker()
