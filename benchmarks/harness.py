"""What the benchmarks share (README.md, "Adding a benchmark"): a module's
``run(ctx: Context)`` returns a :class:`Section` of :class:`Row` s (one measurement each) and
notes."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import gc
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS_DIR = HERE / "results"
RESULTS_MD = HERE / "RESULTS.md"
SCHEMA = 1
# The benchmarks (modules of this package), in the order they run and appear in tables.
BENCHMARKS = {
    name: f"benchmarks.{name}"
    for name in (
        "click_latency browser_latency weight_sharing cpu_dtype sam_dtype end_to_end speedups "
        "segmenters background_methods edges batches reruns"
    ).split()
}
PACKAGES = ("torch", "torchvision", "diffusers", "transformers", "accelerate", "safetensors")
PACKAGES += ("segment-anything", "numpy", "sdsam-nb")
SESSION = 5  # clicks per session (reset between them) in every click benchmark


def log(msg: str) -> None:
    """A progress line on stderr."""
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- results


@dataclass
class Row:
    """One measurement. ``value`` is a number (or ``None`` when not measured) in ``unit``."""

    metric: str
    value: float | None
    unit: str = ""
    target: str = ""  # human-readable, e.g. "≥ 50"; empty when there is none
    met: bool | None = None  # None: no target, or not judged here
    note: str = ""


@dataclass
class Section:
    """What one benchmark returns."""

    name: str
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    status: str = "ok"  # ok | skipped | error
    reason: str = ""  # why skipped, or the error
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # raw data for the JSON

    def add(self, metric: str, value: float | None, unit: str = "", **kw) -> Row:
        row = Row(metric, None if value is None else float(value), unit, **kw)
        self.rows.append(row)
        return row

    def skip(self, reason: str) -> Section:
        self.status, self.reason = "skipped", reason
        return self


@dataclass
class Context:
    """How a run was asked for."""

    device: torch.device
    quick: bool = False
    log: Callable[[str], None] = log

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def sync(self) -> None:
        """Wait for queued GPU work, so a wall-clock timer measures it."""
        if self.cuda:
            torch.cuda.synchronize(self.device)

    @contextmanager
    def timing(self, into: dict[str, float], name: str):
        """``with ctx.timing(times, "stage"):`` adds the block's seconds (GPU work included)."""
        self.sync()
        start = time.perf_counter()
        yield
        self.sync()
        into[name] = into.get(name, 0.0) + time.perf_counter() - start


def judged(value: float | None, op: str, limit: float, ctx: Context, text: str = "") -> dict:
    """``target=`` and ``met=`` for :meth:`Section.add`: ``value op limit`` (``op`` "≥" or
    "≤"), not judged in a quick run; ``text`` replaces the default target text."""
    met = None
    if not ctx.quick and value is not None:
        met = value >= limit if op == "≥" else value <= limit
    return {"target": text or f"{op} {limit}", "met": met}


def format_value(value: float | None, unit: str = "") -> str:
    """A number with a sensible number of digits, and its unit."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    a = abs(value)
    if unit == "":
        return f"{value:.4g}"
    if unit == "s" and 0 < a < 1:
        return format_value(value * 1000, "ms")
    digits = ".0f" if a >= 100 else ".1f" if a >= 10 else ".2f"
    if unit == "x":
        return f"{value:{digits}}x"
    return f"{value:{digits if a >= 0.1 or a == 0 else '.3g'}} {unit}"


# --------------------------------------------------------------------------- measuring


def time_reps(fn: Callable[[], Any], ctx: Context, reps: int, warmup: int = 0) -> list[float]:
    """Seconds of ``reps`` calls of ``fn`` (GPU work included) after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        ctx.sync()
        start = time.perf_counter()
        fn()
        ctx.sync()
        out.append(time.perf_counter() - start)
    return out


def interleaved(
    cases: dict[str, Callable[[], Callable[[], Any]]], ctx: Context, reps: int, warmup: int
) -> dict[str, list[float]]:
    """Time several variants in turns (A, B, A, B, ...), so that other work on a shared machine
    slows them alike. ``cases[name]()`` prepares a variant (untimed) and returns the call to
    time. Returns the timed seconds per variant."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for rep in range(warmup + reps):
        for name, prepare in cases.items():
            (seconds,) = time_reps(prepare(), ctx, 1)
            if rep >= warmup:
                times[name].append(seconds)
    return times


DTYPES = ("float32", "bfloat16")  # what the dtype benchmarks compare, in this order
FASTER = 1.1  # bfloat16 counts as faster than float32 when it saves at least a tenth


def in_turns(ctx: Context, tasks: dict[str, Callable[[str], Callable[[], Any]]], reps: int) -> dict:
    """``tasks[task](dtype)`` (the call to time) in every dtype of :data:`DTYPES`, in turns:
    ``{"seconds": {"<dtype> <task>": [...]}, "threads", "other_cpu_share"}``."""
    cases = {f"{d} {task}": partial(prepare, d) for d in DTYPES for task, prepare in tasks.items()}
    with OtherLoad() as load:
        seconds = interleaved(cases, ctx, reps, 0)
    return {"seconds": seconds, "threads": torch.get_num_threads(), "other_cpu_share": load.share}


def dtype_rows(sec: Section, ctx: Context, seconds: dict, task: str, label: str = "", names=DTYPES):
    """Rows of :func:`in_turns`' ``seconds``: each dtype's median (``"<label or task>: <name>"``)
    and bfloat16's speed-up over float32 (judged against :data:`FASTER`, returned)."""
    s32, s16 = (np.median(seconds[f"{d} {task}"]) for d in DTYPES)
    for name, s in zip(names, (s32, s16), strict=True):
        sec.add(f"{label or task}: {name}", s, "s")
    target = judged(s32 / s16, "≥", FASTER, ctx)
    sec.add(f"{task}: bfloat16 speed-up over float32", s32 / s16, "x", **target)
    return s32 / s16


def dtype_benchmark(ctx: Context, module, gpu: str, timeout: float) -> Section:
    """``run`` of ``cpu_dtype`` and ``sam_dtype`` (skipped on a GPU, where ``gpu`` happens):
    ``module.measure(cfg, quick)`` with its ``QUICK_SETTINGS`` or ``CPU_SETTINGS``
    (:func:`measured`), then ``module.report(sec, ctx, cfg, m)``."""
    sec = Section(module.NAME, module.TITLE)
    if ctx.cuda:
        return sec.skip(f"a CPU measurement (on a GPU {gpu}): run with --device cpu")
    cfg = dict(module.QUICK_SETTINGS if ctx.quick else module.CPU_SETTINGS)
    ctx.log(f"{sec.name}: {cfg}" + ("" if ctx.quick else " in a fresh process (minutes)"))
    kwargs = {"cfg": cfg, "quick": ctx.quick}
    m = measured(ctx, f"{module.__name__}:measure", kwargs, timeout=timeout)
    module.report(sec, ctx, cfg, m)
    sec.extra.update(m, settings=cfg)
    return sec


def busy(share: float | None) -> str:
    """A note's ending: the share of the CPU other processes used (:class:`OtherLoad`)."""
    return "" if share is None else f"; share of the CPU other processes used: {share:.0%}"


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks; 1.0 when both are empty."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def session_clicks(seg, points) -> tuple[list[float], list[float]]:
    """``ClickSegmenter.add_point`` of each of ``points`` in sessions of :data:`SESSION`: each
    one's wall time (its numpy mask: the device work is done) and SAM's part of it."""
    wall, sam = [], []
    for k, (x, y, positive) in enumerate(points):
        if k and k % SESSION == 0:
            seg.reset()
        start = time.perf_counter()
        seg.add_point(x, y, positive)
        wall.append(time.perf_counter() - start)
        sam.append(seg.last_latency_s)
    return wall, sam


def free(ctx: Context) -> None:
    """Drop the kit's loaded models and collect (and on a GPU, empty its cache)."""
    import sdsam_nb

    sdsam_nb.clear_loaded()
    gc.collect()
    if ctx.cuda:
        torch.cuda.empty_cache()


def status_kb(field: str, file: str = "status") -> int | None:
    """A ``kB`` field of ``/proc/self/<file>`` (Linux), e.g. ``VmHWM``; ``None`` elsewhere."""
    try:
        for line in Path(f"/proc/self/{file}").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakMemory:
    """``with PeakMemory(ctx) as m:``; ``m.peak``: the block's peak bytes on top of what was
    held before (CUDA: max_memory_allocated; Linux CPU: ``VmHWM`` reset through
    ``/proc/self/clear_refs``); ``None`` where neither works."""

    def __init__(self, ctx: Context):
        self.ctx, self.before, self.peak = ctx, None, None
        self.method = "CUDA max_memory_allocated growth" if ctx.cuda else "peak RSS growth (VmHWM)"

    def __enter__(self) -> PeakMemory:
        gc.collect()
        self.ctx.sync()
        if self.ctx.cuda:
            torch.cuda.reset_peak_memory_stats(self.ctx.device)
            self.before = torch.cuda.memory_allocated(self.ctx.device)
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")
                self.before = (status_kb("VmRSS") or 0) * 1024
            except OSError:
                self.before = None
        return self

    def __exit__(self, *exc) -> None:
        self.ctx.sync()
        self.peak = None
        if self.before is None:
            return
        if self.ctx.cuda:
            self.peak = torch.cuda.max_memory_allocated(self.ctx.device) - self.before
        elif (hwm := status_kb("VmHWM")) is not None:
            self.peak = max(hwm * 1024 - self.before, 0)


class OtherLoad:
    """``with OtherLoad() as load:``; ``load.share``: the share (0..1) of the machine's CPU time
    other processes used during the block (``/proc/stat``; ``None`` without it)."""

    @staticmethod
    def _read() -> tuple[float, float, float] | None:
        import resource

        try:
            fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        except OSError:
            return None
        ticks = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
        hz = os.sysconf("SC_CLK_TCK")
        own = resource.getrusage(resource.RUSAGE_SELF)
        busy = sum(ticks) - ticks[3] - ticks[4]
        return busy / hz, sum(ticks) / hz, own.ru_utime + own.ru_stime

    def __enter__(self) -> OtherLoad:
        self.start, self.share = self._read(), None
        return self

    def __exit__(self, *exc) -> None:
        end = self._read()
        if self.start is None or end is None or end[1] <= self.start[1]:
            return
        busy, total, own = (e - s for s, e in zip(self.start, end, strict=True))
        self.share = min(max((busy - own) / total, 0.0), 1.0)


# --------------------------------------------------------------------------- test picture


def disc_mask(width: int, height: int) -> np.ndarray:
    """The subject of :func:`disc_picture`: a centred disc of radius ``height / 4``, HxW bool."""
    yy, xx = np.mgrid[0:height, 0:width]
    return (xx - width / 2) ** 2 + (yy - height / 2) ** 2 < (height / 4) ** 2


def disc_picture(width: int, height: int) -> Image.Image:
    """A red disc (:func:`disc_mask`) on a green-blue gradient, RGB."""
    yy, xx = np.mgrid[0:height, 0:width]
    rgb = np.stack([np.zeros_like(xx), xx * 255 // width, yy * 255 // height], axis=-1)
    rgb = rgb.astype(np.uint8)
    rgb[disc_mask(width, height)] = (220, 30, 30)
    return Image.fromarray(rgb)


def includes(k: int) -> bool:
    """Whether click ``k`` is an include click: clicks 0, 1 and 3 of each :data:`SESSION`."""
    return k % SESSION in (0, 1, 3)


def click_plan(n: int, width: int, height: int, seed: int = 0) -> list[tuple[float, float, bool]]:
    """``n`` clicks ``(x, y, positive)`` in pixels of :func:`disc_picture`: sessions of
    :data:`SESSION`, include clicks (:func:`includes`) on the disc, exclude clicks around it."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        positive = includes(k)
        r = rng.uniform(0, height / 5) if positive else rng.uniform(height / 3, height / 2.2)
        a = rng.uniform(0, 2 * np.pi)
        x = float(np.clip(width / 2 + r * np.cos(a), 4, width - 5))
        y = float(np.clip(height / 2 + r * np.sin(a), 4, height - 5))
        out.append((x, y, positive))
    return out


# --------------------------------------------------------------------------- processes


def offline_env(**extra: str) -> dict[str, str]:
    """This process's environment, offline and without progress bars, plus ``extra``."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", **extra}


def command(args: list[str], what: str, *, timeout: float, **kw) -> tuple[float, str]:
    """Run ``args`` (a list; ``kw`` as for ``subprocess.run``, e.g. ``env``, ``cwd``); return
    its wall-clock seconds and stdout. Raises RuntimeError naming ``what`` with the end of its
    output if it fails."""
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        lines = (done.stdout + done.stderr).strip().splitlines()
        tail = [ln for ln in lines if "WARNING" not in ln][-5:]
        raise RuntimeError(f"{what} failed (exit {done.returncode}): {' | '.join(tail)}")
    return seconds, done.stdout


def run_worker(target: str, kwargs: dict, *, timeout: float, flush_denormal: bool = False) -> dict:
    """``target(**kwargs)`` (``"module:function"``, JSON arguments) in a fresh, offline Python
    process (subnormal floats flushed to zero first if asked: random weights drive activations
    into the subnormal range, where CPU matrix products run up to ~100x slower); its result."""
    spec = json.dumps({"target": target, "kwargs": kwargs, "flush": flush_denormal})
    code = "import sys, benchmarks.harness as h; h.worker_main(sys.argv[1])"
    args = [sys.executable, "-c", code, spec]
    _, out = command(args, target, timeout=timeout, cwd=REPO, env=offline_env())
    return json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])


def measured(ctx: Context, target: str, kwargs: dict, *, timeout: float, here: bool = False):
    """``target(**kwargs)`` in this process for a quick run (or if ``here``), else in a
    :func:`run_worker` that flushes subnormal floats to zero on the CPU."""
    if ctx.quick or here:
        return _call(target, kwargs)
    return run_worker(target, kwargs, timeout=timeout, flush_denormal=not ctx.cuda)


def _call(target: str, kwargs: dict) -> Any:
    module, _, function = target.partition(":")
    return getattr(import_module(module), function)(**kwargs)


def worker_main(spec: str) -> None:
    """The worker side of :func:`run_worker`: prints the result as one JSON line."""
    spec = json.loads(spec)
    if spec["flush"]:  # before the first parallel op, so that every worker thread has it
        torch.set_flush_denormal(True)
    with quiet():
        print(json.dumps(jsonable(_call(spec["target"], spec["kwargs"]))), flush=True)


@contextmanager
def quiet():
    """While open: offline (``HF_HUB_OFFLINE``, unless set: everything is built locally), no
    progress bars, diffusers' warnings off; diffusers' settings back as they were on exit."""
    for key in ("HF_HUB_OFFLINE", "HF_HUB_DISABLE_PROGRESS_BARS"):
        os.environ.setdefault(key, "1")
    from diffusers.utils import logging as dlogging

    level, bars = dlogging.get_verbosity(), dlogging.is_progress_bar_enabled()
    dlogging.set_verbosity_error()
    dlogging.disable_progress_bar()
    try:
        yield
    finally:
        dlogging.set_verbosity(level)
        if bars:
            dlogging.enable_progress_bar()


# --------------------------------------------------------------------------- environment


def environment(ctx: Context) -> dict[str, Any]:
    """The device (e.g. "CPU, 2 cores"), CPU model, torch's threads and the load average."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    models = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
    if ctx.cuda:
        props = torch.cuda.get_device_properties(ctx.device)
        name = f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"
    else:
        affinity = getattr(os, "sched_getaffinity", None)
        name = f"CPU, {len(affinity(0)) if affinity else os.cpu_count()} cores"
    env = {
        "device": str(ctx.device),
        "device_name": name,
        "cpu": models[0] if models else platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "loadavg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    if ctx.cuda:
        env["gpu_capability"] = ".".join(map(str, torch.cuda.get_device_capability(ctx.device)))
    return env


def package_versions() -> dict[str, str | None]:
    def known(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        **{n: known(n) for n in PACKAGES},
        "cuda": torch.version.cuda,
    }


def git_commit() -> dict[str, Any]:
    """The checkout's commit and whether it has uncommitted changes (``None`` without git)."""

    def git(*args: str) -> str | None:
        try:
            return command(["git", *args], "git", timeout=10, cwd=REPO)[1].strip()
        except (OSError, subprocess.SubprocessError, RuntimeError):
            return None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


# --------------------------------------------------------------------------- table, RESULTS.md


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(sections: Sequence[Section]) -> str:
    """One markdown table: benchmark | measurement | value | target | met."""
    lines = [
        "| benchmark | measurement | value | target | met |",
        "| --- | --- | --- | --- | --- |",
    ]
    for sec in sections:
        if sec.status != "ok":
            lines.append(f"| {_cell(sec.name)} | {sec.status}: {_cell(sec.reason)} | | | |")
        for row in sec.rows if sec.status == "ok" else ():
            met = "" if row.met is None else ("yes" if row.met else "**no**")
            metric = row.metric + (f" ({row.note})" if row.note else "")
            cells = (sec.name, metric, format_value(row.value, row.unit), row.target, met)
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def notes_markdown(sections: Sequence[Section]) -> str:
    return "\n".join(f"- {sec.name}: {note}" for sec in sections for note in sec.notes)


_BLOCK = re.compile(r"<!-- BEGIN (\w+)/(\w+) -->\n(.*?)<!-- END \1/\2 -->\n", re.S)

RESULTS_HEADER = """\
# Benchmark results

Written by `python -m benchmarks` (see [README.md](README.md)); a full run replaces the
blocks of the benchmarks it ran on its kind of device and leaves the others. Every model has
its **full-size architecture with random weights** (nothing can be downloaded where these
run): timings and memory are real, pictures are noise, quality is not judged. Absolute
times are quoted only from a GPU run; CPU blocks are there for the ratios measured in one run.
"""
GPU_PENDING = (
    "GPU numbers are **pending a GPU run**. On a machine with a CUDA GPU and this repository's "
    "environment, run\n\n    python -m benchmarks --device cuda\n\n(one command, nothing else "
    "needed: it builds the full-size random-weight models itself, about 2.1 GB on disk, and "
    "uses nothing from the network). It fills this section; until then quote only the ratios "
    "of the CPU section below (its absolute times are those of a shared 2-core machine)."
)


def _block(kind: str, sec: Section, stamp: str) -> str:
    body = [f"#### {sec.title}", "", f"_{stamp}_", ""]
    if sec.status == "ok":
        body.append(markdown_table([sec]))
        if sec.notes:
            body += ["", notes_markdown([sec])]
    elif sec.status == "skipped":
        body.append(f"Skipped: {sec.reason}")
    else:
        body.append(f"Error: `{sec.reason}`")
    tag = f"{kind}/{sec.name}"
    return f"<!-- BEGIN {tag} -->\n" + "\n".join(body) + f"\n<!-- END {tag} -->\n"


def update_results_md(path: Path, kind: str, sections: Sequence[Section], stamp: str) -> None:
    """Replace the ``kind`` (cpu | cuda) blocks of ``sections`` in ``path``; keep all others."""
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    blocks = {m.group(1, 2): m.group(0) for m in _BLOCK.finditer(old)}
    for sec in sections:
        blocks[(kind, sec.name)] = _block(kind, sec, stamp)
    parts = [RESULTS_HEADER]
    for k, heading in (("cuda", "GPU"), ("cpu", "CPU")):
        have = [blocks[(k, n)] for n in BENCHMARKS if (k, n) in blocks]
        parts += [f"## {heading}", *(have or ([GPU_PENDING] if k == "cuda" else []))]
    path.write_text("\n\n".join(p.strip("\n") for p in parts) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- running


def jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {k: jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def run_one(name: str, ctx: Context) -> Section:
    module = import_module(BENCHMARKS[name])
    start = time.perf_counter()
    ctx.log(f"{name}: start ({'quick, tiny models' if ctx.quick else 'full size'}, {ctx.device})")
    try:
        sec = module.run(ctx)
    except Exception as exc:  # one failing benchmark must not hide the others' results
        ctx.log(f"{name}: FAILED\n{traceback.format_exc()}")
        sec = Section(name, module.TITLE, status="error", reason=f"{type(exc).__name__}: {exc}")
    sec.seconds = time.perf_counter() - start
    ctx.log(f"{name}: {sec.status} in {sec.seconds:.1f} s")
    return sec


def run_all(
    names: Sequence[str],
    ctx: Context,
    *,
    results_dir: Path = RESULTS_DIR,
    results_md: Path | None = RESULTS_MD,
    argv: Sequence[str] = (),
) -> tuple[dict[str, Any], Path]:
    """Run ``names``; print the table; write the JSON (and RESULTS.md unless ``None``)."""
    when = _dt.datetime.now().astimezone()
    load_start = environment(ctx)["loadavg_1min"]
    threads = torch.get_num_threads()
    if ctx.quick:
        # Tiny models are all per-op overhead: a second thread only adds synchronisation, and
        # on a busy machine it stalls. Quick numbers mean nothing anyway; keep them steady.
        torch.set_num_threads(1)
    try:
        sections = [run_one(name, ctx) for name in names]
    finally:
        torch.set_num_threads(threads)
    record = {
        "schema": SCHEMA,
        "date": when.isoformat(timespec="seconds"),
        "command": "python -m benchmarks " + " ".join(argv),
        "quick": ctx.quick,
        "environment": {**environment(ctx), "loadavg_1min_start": load_start},
        "versions": package_versions(),
        "git": git_commit(),
        "benchmarks": {sec.name: jsonable(sec) for sec in sections},
    }
    dev = record["environment"]["device_name"]
    mode = "quick (tiny models)" if ctx.quick else "full-size architectures, random weights"
    print(f"\n## Benchmarks — {dev}, {when:%Y-%m-%d %H:%M %Z}, {mode}\n")
    print(markdown_table(sections))
    if notes := notes_markdown(sections):
        print("\n" + notes)
    results_dir.mkdir(parents=True, exist_ok=True)
    tag = "quick" if ctx.quick else "full"
    out = results_dir / f"{when:%Y%m%d-%H%M%S}_{ctx.device.type}_{tag}.json"
    out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"\nJSON: {out}")
    if results_md is not None and not ctx.quick:
        commit = (record["git"]["commit"] or "no git")[:10]
        dirty = "+changes" if record["git"]["dirty"] else ""
        stamp = f"{dev}, {when:%Y-%m-%d}, commit {commit}{dirty}, torch {torch.__version__}"
        update_results_md(results_md, ctx.device.type, sections, stamp)
        print(f"updated {results_md}")
    return record, out
