"""What every benchmark shares: the run context, result rows, statistics, the markdown table,
the JSON record and the RESULTS.md update.

A benchmark module exposes ``NAME``, ``TITLE`` and ``run(ctx: Context) -> Section``. A
:class:`Section` holds :class:`Row` s (one measurement each: value, unit, target, whether the
target is met) and free-text notes. :func:`run_all` runs the selected modules, prints one
markdown table, writes ``benchmarks/results/<date>_<device>.json`` and (for a full run, not
``--quick``) replaces that device's blocks in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS_DIR = HERE / "results"
RESULTS_MD = HERE / "RESULTS.md"
SCHEMA = 1

# Benchmark name -> module, in the order they run and appear in tables.
BENCHMARKS = {
    "click_latency": "benchmarks.click_latency",
    "browser_latency": "benchmarks.browser_latency",
    "weight_sharing": "benchmarks.weight_sharing",
    "end_to_end": "benchmarks.end_to_end",
    "speedups": "benchmarks.speedups",
    "segmenters": "benchmarks.segmenters",
    "background_methods": "benchmarks.background_methods",
    "edges": "benchmarks.edges",
    "batches": "benchmarks.batches",
    "reruns": "benchmarks.reruns",
}
PACKAGES = (
    "torch",
    "torchvision",
    "diffusers",
    "transformers",
    "accelerate",
    "safetensors",
    "segment-anything",
    "numpy",
    "sdsam-nb",
)
GPU_COMMAND = "python -m benchmarks --device cuda"


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

    def formatted(self) -> str:
        return format_value(self.value, self.unit)


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


@dataclass
class Context:
    """How a run was asked for."""

    device: torch.device
    quick: bool = False
    log: Callable[[str], None] = field(
        default=lambda msg: print(f"[bench] {msg}", file=sys.stderr, flush=True)
    )

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def section(self, name: str, title: str) -> Section:
        return Section(name, title)

    def sync(self) -> None:
        """Wait for queued GPU work, so a wall-clock timer measures it."""
        if self.cuda:
            torch.cuda.synchronize(self.device)


def format_value(value: float | None, unit: str = "") -> str:
    """A number with a sensible number of digits, and its unit."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    a = abs(value)
    if unit == "x":
        text = f"{value:.0f}" if a >= 100 else f"{value:.1f}" if a >= 10 else f"{value:.2f}"
        return text + "x"
    if unit == "":
        return f"{value:.4g}"
    if unit == "s" and 0 < a < 1:
        return format_value(value * 1000, "ms")
    if a >= 100:
        text = f"{value:.0f}"
    elif a >= 10:
        text = f"{value:.1f}"
    elif a >= 0.1 or a == 0:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip()


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def p90(xs: Sequence[float]) -> float:
    """90th percentile, linear interpolation between order statistics (numpy's default)."""
    s = sorted(xs)
    if len(s) == 1:
        return float(s[0])
    k = 0.9 * (len(s) - 1)
    lo = math.floor(k)
    hi = min(lo + 1, len(s) - 1)
    return float(s[lo] + (s[hi] - s[lo]) * (k - lo))


def timed(fn: Callable[[], Any], ctx: Context) -> tuple[float, Any]:
    """(seconds, result) of ``fn()``, GPU work included."""
    ctx.sync()
    start = time.perf_counter()
    out = fn()
    ctx.sync()
    return time.perf_counter() - start, out


# --------------------------------------------------------------------------- environment


def device_name(device: torch.device) -> str:
    """``"CPU, 2 cores"`` or the GPU's name and memory, e.g. "NVIDIA H100 80GB HBM3 (79 GiB)"."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return f"CPU, {cores} cores"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    out["cuda"] = torch.version.cuda
    return out


def git_commit() -> dict[str, Any]:
    """The checkout's commit and whether it has uncommitted changes (``None`` without git)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def environment(ctx: Context) -> dict[str, Any]:
    env = {
        "device": str(ctx.device),
        "device_name": device_name(ctx.device),
        "cpu": cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
    if hasattr(os, "getloadavg"):  # on a shared machine, other work skews CPU timings
        env["loadavg_1min"] = round(os.getloadavg()[0], 2)
    if ctx.cuda:
        env["gpu_capability"] = ".".join(map(str, torch.cuda.get_device_capability(ctx.device)))
    return env


# --------------------------------------------------------------------------- table


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
            what = "skipped" if sec.status == "skipped" else "error"
            lines.append(f"| {_cell(sec.name)} | {what}: {_cell(sec.reason)} | | | |")
            continue
        for row in sec.rows:
            met = "" if row.met is None else ("yes" if row.met else "**no**")
            metric = row.metric + (f" ({row.note})" if row.note else "")
            lines.append(
                f"| {_cell(sec.name)} | {_cell(metric)} | {_cell(row.formatted())} "
                f"| {_cell(row.target)} | {met} |"
            )
    return "\n".join(lines)


def notes_markdown(sections: Sequence[Section]) -> str:
    out = []
    for sec in sections:
        for note in sec.notes:
            out.append(f"- {sec.name}: {note}")
    return "\n".join(out)


# --------------------------------------------------------------------------- RESULTS.md

_BLOCK = re.compile(r"<!-- BEGIN (\w+)/(\w+) -->\n(.*?)<!-- END \1/\2 -->\n", re.S)

RESULTS_HEADER = """\
# Benchmark results

Written by `python -m benchmarks` (see [README.md](README.md)); a full run replaces the
blocks of the benchmarks it ran on its kind of device and leaves the others. Every model has
its **full-size architecture with random weights** (nothing can be downloaded where these
run): timings and memory are real, pictures are noise, quality is not judged. Absolute
times are quoted only from a GPU run; CPU blocks are there for the ratios measured in one run.
"""


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
    return (
        f"<!-- BEGIN {kind}/{sec.name} -->\n"
        + "\n".join(body)
        + f"\n<!-- END {kind}/{sec.name} -->\n"
    )


def update_results_md(path: Path, kind: str, sections: Sequence[Section], stamp: str) -> None:
    """Replace the ``kind`` (cpu | cuda) blocks of ``sections`` in ``path``; keep all others."""
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    blocks = {(k, n): m.group(0) for m in _BLOCK.finditer(old) for k, n in [m.group(1, 2)]}
    for sec in sections:
        blocks[(kind, sec.name)] = _block(kind, sec, stamp)
    parts = [RESULTS_HEADER]
    for k, heading in (("cuda", "GPU"), ("cpu", "CPU")):
        parts.append(f"## {heading}")
        have = [n for n in BENCHMARKS if (k, n) in blocks]
        if k == "cuda" and not have:
            parts.append(
                "GPU numbers are **pending a GPU run**. On a machine with a CUDA GPU and this "
                f"repository's environment, run\n\n    {GPU_COMMAND}\n\n"
                "(one command, nothing else needed: it builds the full-size random-weight models "
                "itself, about 2.1 GB on disk, and uses nothing from the network). It fills this "
                "section; until then quote only the ratios of the CPU section below (its "
                "absolute times are those of a shared 2-core machine)."
            )
        parts += [blocks[(k, n)] for n in have]
    path.write_text("\n\n".join(p.strip("\n") for p in parts) + "\n", encoding="utf-8")


def run_worker(module: str, args: list[str], *, timeout: float, what: str) -> dict:
    """``python -m module *args`` in a fresh process (offline, no progress bars), from the
    repository root; its last stdout line that starts with ``{`` is its JSON result.

    Raises:
        RuntimeError: the worker failed or printed no result; ``what`` names it.
    """
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{what} worker failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return json.loads(lines[-1])


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
        sec = Section(name, getattr(module, "TITLE", name), status="error")
        sec.reason = f"{type(exc).__name__}: {exc}"
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
    env_start = environment(ctx)
    threads = torch.get_num_threads()
    if ctx.quick:
        # Tiny models are all per-op overhead: a second thread only adds synchronisation, and
        # on a busy machine it stalls. Quick numbers mean nothing anyway; keep them steady.
        torch.set_num_threads(1)
    try:
        sections = [run_one(name, ctx) for name in names]
    finally:
        torch.set_num_threads(threads)
    env = environment(ctx)
    env["loadavg_1min_start"] = env_start.get("loadavg_1min")
    record = {
        "schema": SCHEMA,
        "date": when.isoformat(timespec="seconds"),
        "command": "python -m benchmarks " + " ".join(argv),
        "quick": ctx.quick,
        "environment": env,
        "versions": package_versions(),
        "git": git_commit(),
        "benchmarks": {sec.name: jsonable(sec) for sec in sections},
    }
    table = markdown_table(sections)
    dev = record["environment"]["device_name"]
    mode = "quick (tiny models)" if ctx.quick else "full-size architectures, random weights"
    print(f"\n## Benchmarks — {dev}, {when:%Y-%m-%d %H:%M %Z}, {mode}\n")
    print(table)
    notes = notes_markdown(sections)
    if notes:
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
