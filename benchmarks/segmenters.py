"""Segmentation backends side by side: each against segment_anything's ``vit_b``.

Every backend the kit's :func:`sdsam_nb.load_sam` serves, at its **full-size architecture with
random weights** (no download), built in code from its published configuration:

* segment_anything ``vit_b`` (the reference): ``build_sam_vit_b(checkpoint=None)`` wrapped by
  ``SamPredictor``, as :func:`sdsam_nb.load_sam` returns it;
* transformers ``SamModel``: ``facebook/sam-vit-base`` (``SamConfig()``'s defaults) and the
  pruned SlimSAM ``Zigeng/SlimSAM-uniform-77`` / ``-50`` (narrower ViT widths);
* ``SamHQModel``: SAM-HQ vit-b (``syscv-community/sam-hq-vit-base``);
* ``Sam2Model``: SAM 2.1 ``facebook/sam2.1-hiera-tiny|small|base-plus|large``.

Each transformers model is wrapped as the kit wraps a loaded checkpoint:
``TransformersSam(model.eval(), processor, family=..., source=hub_id)`` with
``SamProcessor(image_processor=SamImageProcessor())`` (longest side 1024, padded to 1024x1024)
or ``Sam2Processor(image_processor=Sam2ImageProcessor())`` (resized to 1024x1024), the
published checkpoints' preprocessing. All are used through
:class:`sdsam_nb.ClickSegmenter` on the kit's sample picture (512x384,
:func:`sdsam_nb.runs.sample_subject`), in fp32 on the device asked for:

* embedding: ``ClickSegmenter(model, image)`` construction (the image encoder, once per
  picture), median of :data:`EMBED_REPS` after one warm-up;
* click: ``add_point`` wall time, median over :data:`CLICKS` clicks in sessions of 5
  (``reset()`` between them), include clicks on the subject and exclude clicks beside it
  drawn from the sample's own mask, after two warm-up clicks;
* parameters (millions) and their bytes; peak memory of one embedding on top of what was
  held before it: on the CPU the growth of the process's peak resident memory (``VmHWM``,
  reset through ``/proc/self/clear_refs``), on CUDA ``torch.cuda.max_memory_allocated``;
* ratios to ``vit_b`` within the one run.

A full run measures each backend in a fresh Python process (``python -m benchmarks.segmenters
--backend NAME`` prints one JSON line), so one model is held at a time and each memory figure
is its own; on the CPU that process flushes subnormal floats to zero before its first
operation (:data:`FLUSH_DENORMAL_NOTE`: random weights would otherwise make the CPU timings
those of subnormal arithmetic). ``--quick`` runs the kit's tiny variants (``"tiny"`` and
``"tiny-sam"``, ``"tiny-slimsam"``, ``"tiny-sam-hq"``, ``"tiny-sam2"`` through
:func:`sdsam_nb.load_sam`) in this process, once each: its numbers mean nothing. Random
weights make every mask arbitrary: mask quality is not judged here.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .click_latency import SESSION
from .harness import Context, Section, format_value, median, run_worker

NAME = "segmenters"
TITLE = "Segmentation backends: embedding, click and memory against segment_anything vit_b"
EMBED_REPS = 3  # timed embeddings after one warm-up (full runs)
CLICKS = 10  # timed clicks (full runs): two sessions of SESSION
SEED = 0

# What each family is for, in a few words (the table's last column).
PURPOSE = {
    "segment_anything": "reference: the kit's default SAM",
    "sam": "the same SAM through transformers",
    "slimsam": "small CPU/GPU (pruned SAM)",
    "sam_hq": "finer edges (hair, thin parts)",
    "sam2": "better masks, lighter encoder",
}

# SlimSAM: the published config.json of nielsr/slimsam-{77,50}-uniform (which
# Zigeng/SlimSAM-uniform-* carry, same size) sets only these two vision widths; everything
# else is SamConfig's default (12 layers, 12 heads, global attention in 2, 5, 8, 11).
SLIMSAM_VISION = {
    "77": {"hidden_size": 168, "mlp_dim": 696},
    "50": {"hidden_size": 384, "mlp_dim": 1536},
}

# SAM 2.1 Hiera trunks as sam2/configs/sam2.1/sam2.1_hiera_{t,s,b+,l}.yaml set them (a key a
# yaml leaves out takes the Hiera class default: stages (2, 3, 16, 3), global blocks
# (12, 16, 20), background (14, 14), windows (8, 4, 14, 7)). Dims and heads double at each of
# the three stage changes (Hiera's dim_mul = head_mul = 2).
SAM21_HIERA = {
    "tiny": {
        "embed_dim": 96,
        "num_heads": 1,
        "stages": [1, 2, 7, 2],
        "global_att_blocks": [5, 7, 9],
        "window_pos_embed_bkg_spatial_size": [7, 7],
        "window_spec": [8, 4, 14, 7],
    },
    "small": {
        "embed_dim": 96,
        "num_heads": 1,
        "stages": [1, 2, 11, 2],
        "global_att_blocks": [7, 10, 13],
        "window_pos_embed_bkg_spatial_size": [7, 7],
        "window_spec": [8, 4, 14, 7],
    },
    "base-plus": {
        "embed_dim": 112,
        "num_heads": 2,
        "stages": [2, 3, 16, 3],
        "global_att_blocks": [12, 16, 20],
        "window_pos_embed_bkg_spatial_size": [14, 14],
        "window_spec": [8, 4, 14, 7],
    },
    "large": {
        "embed_dim": 144,
        "num_heads": 2,
        "stages": [2, 6, 36, 4],
        "global_att_blocks": [23, 33, 43],
        "window_pos_embed_bkg_spatial_size": [7, 7],
        "window_spec": [8, 4, 16, 8],
    },
}


# Random weights drive activations into the subnormal float range, where CPU matrix products
# run up to ~100x slower; trained weights do not. Full CPU runs therefore flush subnormals to zero.
FLUSH_DENORMAL_NOTE = (
    "one fresh process per backend; on the CPU each flushes subnormal floats to zero "
    "(torch.set_flush_denormal, set before its first operation so that every thread has it): "
    "random weights drive activations into the subnormal range, where CPU matrix products run "
    "up to ~100x slower (a 2048x2048 fp32 matmul here: 7.6 s against 0.05 s), which trained "
    "weights do not"
)


@dataclass(frozen=True)
class Backend:
    """One row of the comparison: how to build it and what it stands for."""

    name: str
    family: str  # a key of PURPOSE
    source: str  # the published checkpoint whose architecture it has
    build: Callable[[torch.device], Any]  # -> what ClickSegmenter takes


# --------------------------------------------------------------------------- builders


def _seeded(make: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        return make()


def _sa_vit_b(device: torch.device):
    from segment_anything import SamPredictor

    from .fullsize import build_sam

    return SamPredictor(build_sam("vit_b", device))


def _transformers(family: str, source: str, make_model: Callable[[], Any]):
    def build(device: torch.device):
        import transformers

        from sdsam_nb.models.hf_sam import TransformersSam

        model = _seeded(make_model).to(device).eval()
        if family == "sam2":
            processor = transformers.Sam2Processor(
                image_processor=transformers.Sam2ImageProcessor()
            )
        else:
            processor = transformers.SamProcessor(image_processor=transformers.SamImageProcessor())
        kind = "sam" if family == "slimsam" else family
        return TransformersSam(model, processor, family=kind, source=source)

    return build


def sam_vit_base():
    from transformers import SamConfig, SamModel

    return SamModel(SamConfig())  # SamConfig's defaults are facebook/sam-vit-base


def slimsam(which: str):
    from transformers import SamConfig, SamModel

    return SamModel(SamConfig(vision_config=SLIMSAM_VISION[which]))


def sam_hq_vit_base():
    from transformers import SamHQConfig, SamHQModel

    # transformers' SAM-HQ conversion: SamHQVisionConfig() (vit-b) and the decoder's vit_dim 768
    return SamHQModel(SamHQConfig(mask_decoder_config={"vit_dim": 768}))


def sam2_hiera_config(size: str) -> dict:
    """``Sam2Config(vision_config=...)`` for SAM 2.1 Hiera ``size`` (a key of SAM21_HIERA)."""
    h = SAM21_HIERA[size]
    dims = [h["embed_dim"] * 2**i for i in range(4)]
    backbone = {
        "model_type": "sam2_hiera_det_model",
        "hidden_size": h["embed_dim"],
        "num_attention_heads": h["num_heads"],
        "blocks_per_stage": h["stages"],
        "embed_dim_per_stage": dims,
        "num_attention_heads_per_stage": [h["num_heads"] * 2**i for i in range(4)],
        "window_size_per_stage": h["window_spec"],
        "global_attention_blocks": h["global_att_blocks"],
        "window_positional_embedding_background_size": h["window_pos_embed_bkg_spatial_size"],
    }
    return {"backbone_config": backbone, "backbone_channel_list": dims[::-1]}


def sam2_hiera(size: str):
    from transformers import Sam2Config, Sam2Model

    return Sam2Model(Sam2Config(vision_config=sam2_hiera_config(size)))


def full_size_backends() -> list[Backend]:
    """The reference first, then the transformers families."""
    out = [
        Backend("sa-vit_b", "segment_anything", "sam_vit_b_01ec64.pth", _sa_vit_b),
        Backend(
            "sam-vit-base",
            "sam",
            "facebook/sam-vit-base",
            _transformers("sam", "facebook/sam-vit-base", sam_vit_base),
        ),
    ]
    for which in SLIMSAM_VISION:
        hub = f"Zigeng/SlimSAM-uniform-{which}"
        out.append(
            Backend(
                f"slimsam-uniform-{which}",
                "slimsam",
                hub,
                _transformers("slimsam", hub, lambda w=which: slimsam(w)),
            )
        )
    hq = "syscv-community/sam-hq-vit-base"
    out.append(
        Backend("sam-hq-vit-base", "sam_hq", hq, _transformers("sam_hq", hq, sam_hq_vit_base))
    )
    for size in SAM21_HIERA:
        hub = f"facebook/sam2.1-hiera-{size}"
        out.append(
            Backend(
                f"sam2.1-hiera-{size}",
                "sam2",
                hub,
                _transformers("sam2", hub, lambda s=size: sam2_hiera(s)),
            )
        )
    return out


def quick_backends() -> list[Backend]:
    """The kit's tiny variants, loaded through :func:`sdsam_nb.load_sam`."""

    def load(name: str):
        def build(device: torch.device):
            import sdsam_nb

            return sdsam_nb.load_sam(name, device=device)

        return build

    from sdsam_nb.models import hf_sam

    every = [
        Backend("sa-tiny", "segment_anything", "tiny", load("tiny")),
        Backend("tiny-sam", "sam", "tiny-sam", load("tiny-sam")),
        Backend("tiny-slimsam", "slimsam", "tiny-slimsam", load("tiny-slimsam")),
        Backend("tiny-sam-hq", "sam_hq", "tiny-sam-hq", load("tiny-sam-hq")),
        Backend("tiny-sam2", "sam2", "tiny-sam2", load("tiny-sam2")),
    ]
    # an older transformers (the kit's floor) has SAM but not SAM-HQ or SAM 2
    return [b for b in every if b.source == "tiny" or hf_sam.available(b.source)]


# --------------------------------------------------------------------------- measuring


def _module(model) -> torch.nn.Module:
    """The ``nn.Module`` behind a ``SamPredictor`` or a ``TransformersSam``."""
    return model.model


def parameters(model) -> tuple[int, int]:
    """``(count, bytes)`` of the model's parameters."""
    params = list(_module(model).parameters())
    return sum(p.numel() for p in params), sum(p.numel() * p.element_size() for p in params)


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakMemory:
    """Peak memory of a block on top of what was held when it started, in bytes.

    CUDA: ``torch.cuda.max_memory_allocated`` (the allocator's view, tensors only). CPU (Linux):
    the process's peak resident set (``VmHWM``), reset to the current resident set by writing
    ``5`` to ``/proc/self/clear_refs``; ``None`` where that is not possible.
    """

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.before: int | None = None
        self.peak: int | None = None

    @property
    def method(self) -> str:
        if self.ctx.cuda:
            return "CUDA max_memory_allocated growth"
        return "peak RSS growth (VmHWM)"

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.ctx.cuda:
            torch.cuda.synchronize(self.ctx.device)
            torch.cuda.reset_peak_memory_stats(self.ctx.device)
            self.before = torch.cuda.memory_allocated(self.ctx.device)
            return self
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.before = None
            return self
        rss = _status_kb("VmRSS")
        self.before = None if rss is None else rss * 1024
        return self

    def __exit__(self, *exc) -> None:
        self.peak = None
        if self.before is None:
            return
        if self.ctx.cuda:
            torch.cuda.synchronize(self.ctx.device)
            self.peak = torch.cuda.max_memory_allocated(self.ctx.device) - self.before
        else:
            hwm = _status_kb("VmHWM")
            self.peak = None if hwm is None else max(hwm * 1024 - self.before, 0)


def picture_and_clicks(n: int, seed: int = SEED):
    """The sample picture (``PIL`` RGB) and ``n`` clicks ``(x, y, positive)`` on it.

    Sessions of :data:`SESSION` clicks, each opening with an include click; include clicks
    fall on the subject and exclude clicks off it, both drawn from the sample's exact mask.
    """
    from PIL import Image

    from sdsam_nb import to_rgb
    from sdsam_nb.runs import sample_mask, sample_subject

    image = to_rgb(sample_subject())
    mask = np.asarray(Image.open(sample_mask()).convert("L")) > 127
    inside, outside = np.argwhere(mask), np.argwhere(~mask)
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        positive = k % SESSION in (0, 1, 3)
        pool = inside if positive else outside
        y, x = pool[rng.integers(len(pool))]
        out.append((float(x), float(y), positive))
    return image, out


def measure(model, image, points, ctx: Context, reps: int) -> dict:
    """Embedding times, peak embedding memory and click times of one backend."""
    from sdsam_nb import ClickSegmenter

    seg = ClickSegmenter(model, image)  # warm-up: encoder, then decoder
    for x, y, positive in points[:2]:
        seg.add_point(x, y, positive)
    embed_s, peaks = [], []
    mem = PeakMemory(ctx)
    for _ in range(reps):
        seg = None  # the previous embedding is not held while the next is computed
        with mem:
            ctx.sync()
            start = time.perf_counter()
            seg = ClickSegmenter(model, image)
            ctx.sync()
            embed_s.append(time.perf_counter() - start)
        peaks.append(mem.peak)
    wall, sam = [], []
    for k, (x, y, positive) in enumerate(points):
        if k and k % SESSION == 0:
            seg.reset()
        ctx.sync()
        start = time.perf_counter()
        seg.add_point(x, y, positive)  # returns a numpy mask: the device work is done
        wall.append(time.perf_counter() - start)
        sam.append(seg.last_latency_s)
    known = [p for p in peaks if p is not None]
    return {
        "embedding_s": embed_s,
        "click_s": wall,
        "predict_s": sam,
        "embed_peak_bytes": max(known) if known else None,
        "memory_method": mem.method,
    }


def _free(ctx: Context) -> None:
    gc.collect()
    if ctx.cuda:
        torch.cuda.empty_cache()


def _cpu_seconds() -> tuple[float, float, float] | None:
    """(busy, total) CPU seconds of the whole machine (``/proc/stat``, all cores) and this
    process's own CPU seconds; ``None`` where ``/proc/stat`` is missing."""
    import resource

    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    ticks = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
    hz = os.sysconf("SC_CLK_TCK")
    own = resource.getrusage(resource.RUSAGE_SELF)
    idle = ticks[3] + ticks[4]
    return (sum(ticks) - idle) / hz, sum(ticks) / hz, own.ru_utime + own.ru_stime


def _other_share(start, end) -> float | None:
    """Share of the machine's CPU time that other processes used between two
    :func:`_cpu_seconds` readings (0..1). Other work skews CPU timings, clicks most: a small
    parallel op stalls while another core is busy."""
    if start is None or end is None or end[1] <= start[1]:
        return None
    busy, total, own = (e - s for s, e in zip(start, end, strict=True))
    return min(max((busy - own) / total, 0.0), 1.0)


def measure_backend(backend: Backend, ctx: Context, reps: int, n_clicks: int) -> dict:
    """Build ``backend`` on ``ctx.device``, count its parameters and :func:`measure` it; the
    model is deleted before this returns."""
    image, points = picture_and_clicks(n_clicks)
    model = backend.build(ctx.device)
    try:
        count, nbytes = parameters(model)
        start = _cpu_seconds()
        out = {"params": count, "weight_bytes": nbytes, **measure(model, image, points, ctx, reps)}
        out["other_cpu_share"] = _other_share(start, _cpu_seconds())
        return out
    finally:
        del model
        _free(ctx)


def _measure_in_subprocess(backend: Backend, ctx: Context, reps: int, n_clicks: int) -> dict:
    """:func:`measure_backend` in a fresh Python process (see :func:`_worker`)."""
    args = ["--backend", backend.name, "--device", str(ctx.device)]
    args += ["--reps", str(reps), "--clicks", str(n_clicks)]
    return run_worker("benchmarks.segmenters", args, timeout=3600, what=backend.name)


# --------------------------------------------------------------------------- table


def _ratio(value: float | None, ref: float | None) -> float | None:
    return value / ref if value is not None and ref else None


def wide_table(results: list[dict], ref: str) -> str:
    """One row per backend (markdown), ratios to the ``ref`` row."""
    lines = [
        f"| backend | architecture of | params | embed | embed / {ref} | click "
        f"| click / {ref} | weights | embed peak | what it is for |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        if r.get("error"):
            lines.append(
                f"| {r['name']} | {r['source']} | failed: {r['error'][:80]} | | | | | | | "
                f"{r['purpose']} |"
            )
            continue
        peak = r["embed_peak_bytes"]
        cells = [
            r["name"],
            r["source"],
            format_value(r["params"] / 1e6, "M"),
            format_value(r["embed_median_s"], "s"),
            format_value(r["embed_ratio"], "x"),
            format_value(r["click_median_s"], "s"),
            format_value(r["click_ratio"], "x"),
            format_value(r["weight_bytes"] / 1e9, "GB"),
            format_value(None if peak is None else peak / 1e9, "GB"),
            r["purpose"],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(ctx: Context) -> Section:
    sec = Section(NAME, TITLE)
    backends = quick_backends() if ctx.quick else full_size_backends()
    reps = 1 if ctx.quick else EMBED_REPS
    n_clicks = SESSION if ctx.quick else CLICKS
    _, points = picture_and_clicks(n_clicks)
    ref = backends[0].name
    results: list[dict] = []
    for b in backends:
        row: dict[str, Any] = {
            "name": b.name,
            "family": b.family,
            "source": b.source,
            "purpose": PURPOSE[b.family],
        }
        ctx.log(f"{NAME}: {b.name} ({b.source}): build, {reps}+1 embeddings, {n_clicks} clicks")
        try:
            if ctx.quick:
                row.update(measure_backend(b, ctx, reps, n_clicks))
            else:
                row.update(_measure_in_subprocess(b, ctx, reps, n_clicks))
        except Exception as exc:  # one backend that fails must not hide the others
            ctx.log(f"{NAME}: {b.name} failed: {type(exc).__name__}: {exc}")
            row["error"] = f"{type(exc).__name__}: {exc}"
        if not row.get("error"):
            row["embed_median_s"] = median(row["embedding_s"])
            row["click_median_s"] = median(row["click_s"])
        results.append(row)

    base = results[0]
    method = PeakMemory(ctx).method
    for r in results:
        if r.get("error"):
            sec.add(f"{r['name']}: failed", None, note=r["error"][:120])
            continue
        r["embed_ratio"] = _ratio(r["embed_median_s"], base.get("embed_median_s"))
        r["click_ratio"] = _ratio(r["click_median_s"], base.get("click_median_s"))
        n = r["name"]
        peak = r["embed_peak_bytes"]
        sec.add(f"{n}: parameters", r["params"] / 1e6, "M", note=r["purpose"])
        sec.add(f"{n}: embedding, median of {reps}", r["embed_median_s"], "s")
        sec.add(f"{n}: embedding / {ref}", r["embed_ratio"], "x")
        sec.add(f"{n}: click, median of {n_clicks}", r["click_median_s"], "s")
        sec.add(f"{n}: click / {ref}", r["click_ratio"], "x")
        sec.add(f"{n}: embedding peak memory", None if peak is None else peak / 1e9, "GB")

    table = wide_table(results, ref)
    mode = "quick: tiny models, numbers mean nothing" if ctx.quick else "full size, random weights"
    print(f"\n### {TITLE} ({ctx.device}, {mode})\n")
    print(table)
    print(f"\nembed peak: {method} during one embedding, weights not included", flush=True)
    sec.extra.update(backends=results, table=table, clicks=points, reference=ref)
    sec.notes.append(
        f"{mode}, fp32 on {ctx.device}; the sample picture (512x384, resized by each model's "
        f"processor: 1024 px at full size); embedding = ClickSegmenter construction, median of "
        f"{reps} after a warm-up; click = add_point wall time, median of {n_clicks} in sessions "
        f"of {SESSION}; ratios to {ref} within this run"
    )
    sec.notes.append(
        f"embedding peak memory = {method} during one embedding, on top of the weights "
        "(weights = parameter count x 4 bytes)"
    )
    if not ctx.quick:
        sec.notes.append(FLUSH_DENORMAL_NOTE if not ctx.cuda else "one fresh process per backend")
        sec.notes.append(
            "configs: SamConfig() = facebook/sam-vit-base; SlimSAM-uniform-77/-50 vision "
            "hidden_size 168/384, mlp_dim 696/1536 (nielsr/slimsam-*-uniform config.json, "
            "transformers' SAM conversion script); SAM-HQ vit-b = SamHQConfig() with vit_dim "
            "768 (transformers' convert_samhq_to_hf.py); SAM 2.1 Hiera trunks from "
            "facebookresearch/sam2 sam2/configs/sam2.1/sam2.1_hiera_{t,s,b+,l}.yaml"
        )
    shares = [(r["name"], r.get("other_cpu_share")) for r in results]
    if not ctx.cuda and all(v is not None for _, v in shares):
        sec.notes.append(
            "share of the machine's CPU time other processes used while each backend was "
            "measured (other work skews CPU timings, clicks most: a small parallel op stalls "
            "while another core is busy): " + ", ".join(f"{n} {v:.0%}" for n, v in shares)
        )
    sec.notes.append("what each is for: " + "; ".join(f"{k}: {v}" for k, v in PURPOSE.items()))
    return sec


def _worker(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Measure one full-size segmentation backend.")
    parser.add_argument("--backend", choices=[b.name for b in full_size_backends()], required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reps", type=int, default=EMBED_REPS)
    parser.add_argument("--clicks", type=int, default=CLICKS)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        # Before the first parallel op, so that every worker thread inherits it (afterwards it
        # reaches the calling thread only): see FLUSH_DENORMAL_NOTE.
        torch.set_flush_denormal(True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    backend = next(b for b in full_size_backends() if b.name == args.backend)
    result = measure_backend(backend, Context(device=device), args.reps, args.clicks)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":  # one backend, full size: prints one JSON line (run() starts these)
    _worker()
