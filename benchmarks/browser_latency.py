"""Click to repaint in a real browser: ``MaskPicker`` in JupyterLab, clicked in headless Chromium
(:mod:`benchmarks.browser_harness`), one notebook per configuration (:data:`CONFIGS`); what is
measured and the target: README.md. ``--quick``: no browser, the widget's kernel-side share.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from . import browser_harness as bh
from . import harness as h

NAME = "browser_latency"
TITLE = "Click to repaint in JupyterLab + headless Chromium: SAM's share and the widget's"
LEGACY_COMMIT = "712499f3897eec144b711a91da55540ec8c8009c"
"""The last commit whose ``MaskPicker`` re-sent the whole picture per click."""
PICTURE_SIZE = (1024, 768)  # harness.disc_picture, shown 768x576
CLICKS = 30
WARM_UP = 3
QUICK_CLICKS = 10
TARGET_WIDGET_MS = 15
CONFIGS = (
    ("none", "floor"),
    ("tiny", LEGACY_COMMIT),
    ("tiny", "layers"),
    ("subject", "layers"),
    ("vit_b", "layers"),
    ("sam2.1-hiera-tiny", "layers"),
)
"""``(model, widget)``: widget ``"layers"`` is the checkout's, ``"floor"`` a bare canvas that
draws one disc per mouse-down, anything else a commit whose widget is read with ``git show``."""
MODEL_LABEL = {
    "none": "no SAM",
    "tiny": "tiny SAM",
    "subject": "the subject's true mask, no model",
    "vit_b": "vit_b",
    "sam2.1-hiera-tiny": "SAM 2.1 tiny",
}
CANVAS = ".jp-OutputArea-output canvas.sdsam-bench-canvas"


def fractions(n: int, seed: int = 0) -> list[tuple[float, float, bool]]:
    """:func:`harness.click_plan` on the picture, as fractions of its width and height."""
    width, height = PICTURE_SIZE
    return [(x / width, y / height, p) for x, y, p in h.click_plan(n, width, height, seed)]


class SubjectMask:
    """A segmenter (the kit's interface) that answers every prompt with the subject's true
    mask, the picture's disc, at no cost: a mask shaped like a trained SAM's."""

    backend = "benchmark-subject-mask"

    def embed(self, image):
        return None

    def predict(self, embedding, *, points, labels, box, mask_input, multimask):
        from sdsam_nb.segment.base import Prediction

        n = 3 if multimask else 1
        masks = np.repeat(h.disc_mask(*PICTURE_SIZE)[None], n, axis=0)
        return Prediction(masks, np.linspace(0.9, 0.8, n), np.zeros((n, 256, 256), np.float32))

    def predict_boxes(self, embedding, boxes, *, batch=16):
        return np.repeat(h.disc_mask(*PICTURE_SIZE)[None], len(boxes), axis=0)

    def info(self) -> dict:
        return {"family": self.backend}


def subject_runs() -> int:
    """Rows' runs of :class:`SubjectMask`'s mask layer at display size (the widget's rectangles)."""
    from sdsam_nb.segment.widget import layer_runs, mask_layer

    width, height = PICTURE_SIZE
    small = Image.fromarray(h.disc_mask(width, height)).resize((768, 768 * height // width))
    small = np.asarray(small)
    return sum(len(runs) for runs in layer_runs(mask_layer(small)[0]))


def build_model(name: str, device: str = "cpu"):
    """What ``ClickSegmenter`` takes for configuration ``name`` (random weights at full size)."""
    import torch

    from .segmenters import full_size_backends

    if name == "subject":
        return SubjectMask()
    if name == "tiny":
        import sdsam_nb

        return sdsam_nb.load_sam("tiny", device=device)
    key = {"vit_b": "sa-vit_b"}.get(name, name)
    return next(b for b in full_size_backends() if b.name == key).build(torch.device(device))


def widget_source(commit: str) -> str:
    """``sdsam_nb/segment/widget.py`` at ``commit`` as a top-level module (absolute imports).

    Raises:
        RuntimeError: git or the commit is not available (e.g. a checkout without history).
    """
    args = ["git", "show", f"{commit}:sdsam_nb/segment/widget.py"]
    try:
        _, source = h.command(args, f"the widget at git {commit[:10]}", timeout=30, cwd=h.REPO)
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"the widget at git {commit[:10]}: {exc}") from None
    source = re.sub(r"^from \.\. import ", "from sdsam_nb import ", source, flags=re.M)
    source = re.sub(r"^from \.\.(\w)", r"from sdsam_nb.\1", source, flags=re.M)
    return re.sub(r"^from \.(\w)", r"from sdsam_nb.segment.\1", source, flags=re.M)


# --------------------------------------------------------------------------- the notebook

SETUP = """\
import json, pathlib, sys, time
OUT = pathlib.Path({out!r})
sys.path.insert(0, {repo!r})
import torch
if {flush_denormal!r}:
    torch.set_flush_denormal(True)  # random weights: see benchmarks/segmenters.py
clicks = []


def log_click(kernel_s, sam_s):
    clicks.append({{"kernel_s": kernel_s, "sam_s": sam_s}})
    (OUT / "clicks.json.tmp").write_text(json.dumps(clicks))
    (OUT / "clicks.json.tmp").replace(OUT / "clicks.json")


(OUT / "started").write_text("1")
"""

PICKER = """\
from benchmarks.browser_latency import PICTURE_SIZE, build_model
from benchmarks.harness import disc_picture
from sdsam_nb.segment.clicks import ClickSegmenter
from {module} import MaskPicker

model = build_model({model!r}, {device!r})
start = time.perf_counter()
segmenter = ClickSegmenter(model, disc_picture(*PICTURE_SIZE))
embed_s = time.perf_counter() - start
picker = MaskPicker(segmenter)
picker.canvas.add_class("sdsam-bench-canvas")


def record(event):
    # After the picker's own handler (registered first): this click's times.
    if event.get("event") == "mousedown":
        log_click(picker.last_latency_s, picker.segmenter.last_latency_s)


picker.events.on_dom_event(record)
(OUT / "ready").write_text(json.dumps({{"embed_s": embed_s}}))
picker
"""

FLOOR = """\
import ipywidgets as widgets
from ipycanvas import Canvas, hold_canvas
from ipyevents import Event

from sdsam_nb.segment.widget import SURFACE_CSS

# What any click costs in messaging: a canvas that draws one disc per mouse-down, no more.
# The mouse goes to a box around it, as in MaskPicker (the canvas' own views would send the
# kernel two or three messages of their own first).
canvas = Canvas(width=768, height=576)
canvas.add_class("sdsam-bench-canvas")
canvas.layout.width = "100%"
canvas.layout.margin = "0"
surface = widgets.Box([canvas], layout=widgets.Layout(width="768px", overflow="hidden"))
surface.add_class("sdsam-picker-surface")
events = Event(
    source=surface, watched_events=["mousedown", "contextmenu"], prevent_default_action=True
)


def draw(event):
    if event.get("event") != "mousedown":
        return
    start = time.perf_counter()
    with hold_canvas():
        canvas.clear()
        canvas.fill_style = "rgb(0, 255, 0)"
        canvas.fill_circle(event["relativeX"], event["relativeY"], 6)
    log_click(time.perf_counter() - start, 0.0)


events.on_dom_event(draw)
(OUT / "ready").write_text(json.dumps({{"embed_s": 0.0}}))
widgets.VBox([surface, widgets.HTML(SURFACE_CSS, layout=widgets.Layout(display="none"))])
"""


# --------------------------------------------------------------------------- measuring


def measure_config(server, chromium, root: Path, model: str, widget: str, device: str) -> dict:
    """Open the notebook of one configuration, click :data:`WARM_UP` + :data:`CLICKS` times
    and return the per-click timings (ms) and the embedding time."""
    n = len(list(root.glob("out-*")))  # a configuration may come again
    stem = re.sub(r"[^a-z0-9]+", "-", f"{n}-{model}-{widget[:10]}")  # no dots in a workspace
    out = root / f"out-{stem}"
    out.mkdir()
    module = "sdsam_nb.segment.widget" if widget == "layers" else f"widget_{widget[:10]}"
    if widget == "floor":
        cell = FLOOR.format()
    else:
        cell = PICKER.format(module=module, model=model, device=device)
    setup = SETUP.format(out=str(out), repo=str(h.REPO), flush_denormal=device == "cpu")
    bh.write_notebook(root / f"bench-{stem}.ipynb", setup, cell)
    chromium.run_notebook(server, f"bench-{stem}.ipynb", out / "started", workspace=stem)
    detail = lambda: chromium.detail(server)  # noqa: E731
    bh.wait_for((out / "ready").exists, 300, f"{model}: the picker", 0.2, detail)
    box = chromium.canvas_box(CANVAS)
    page = chromium.page
    reset = page.locator(".sdsam-picker button", has_text="reset").first

    def clicks_done(n: int):
        try:
            done = json.loads((out / "clicks.json").read_text())
        except (OSError, ValueError):
            return None
        return done[n - 1] if len(done) >= n else None

    rows = []
    for k, (fx, fy, positive) in enumerate(fractions(WARM_UP, seed=1) + fractions(CLICKS)):
        if widget != "floor" and k >= WARM_UP and (k - WARM_UP) % h.SESSION == 0:
            reset.click()
            page.get_by_text("0 points (0 include").wait_for(timeout=30_000)
            page.wait_for_timeout(200)
        timing = bh.timed_click(
            page,
            CANVAS,
            box["x"] + fx * box["width"],
            box["y"] + fy * box["height"],
            lambda n=k + 1: clicks_done(n),
            button="left" if positive else "right",
            timeout=60,
        )
        kernel = timing.pop("done")
        timing.update(sam=1000 * kernel["sam_s"], kernel=1000 * kernel["kernel_s"])
        if k >= WARM_UP:
            rows.append(timing)
    server.shutdown_kernels()
    embed_s = json.loads((out / "ready").read_text())["embed_s"]
    return {"clicks": rows, "embed_s": embed_s}


def measure(configs, device: str = "cpu", log=print) -> list[tuple[str, str, dict]]:
    """``(model, widget, measure_config's result)`` for each configuration ``(model,
    widget)`` (see :data:`CONFIGS`) in one JupyterLab server and one browser. A widget at a
    commit git cannot show is left out, with a log line."""
    from sdsam_nb import cache_dir

    with tempfile.TemporaryDirectory(prefix="sdsam-browser-bench-") as tmp:
        home, root = Path(tmp) / "home", Path(tmp) / "root"
        root.mkdir()
        for commit in {w for _, w in configs} - {"layers", "floor"}:
            try:
                (root / f"widget_{commit[:10]}.py").write_text(widget_source(commit))
            except RuntimeError as exc:
                log(f"{NAME}: left out: {exc}")
                configs = [c for c in configs if c[1] != commit]
        env = {"SDSAM_CACHE": str(cache_dir()), "HF_HUB_OFFLINE": "1"}
        server, chromium, results = bh.LabServer(home, root, env=env), None, []
        try:
            server.start(timeout=60)
            chromium = bh.Chromium(bh.find_chromium())
            for model, widget in configs:
                log(f"{NAME}: {model}/{widget[:10]}: {CLICKS} clicks in Chromium")
                start = time.perf_counter()
                result = measure_config(server, chromium, root, model, widget, device)
                results.append((model, widget, result))
                log(f"{NAME}: {model}/{widget[:10]} done in {time.perf_counter() - start:.0f} s")
        finally:
            if chromium is not None:
                chromium.close()
            server.stop()
    return results


def summarize(result: dict) -> dict:
    """Medians and 90th percentiles (ms) of one configuration's clicks."""
    rows = result["clicks"]
    series = {
        "total": [r["last_paint"] for r in rows],
        "frame": [r["last_frame"] for r in rows if r["last_frame"] is not None],
        "sam": [r["sam"] for r in rows],
        "widget": [r["last_paint"] - r["sam"] for r in rows],
        "widget_kernel": [r["kernel"] - r["sam"] for r in rows],
    }
    return {
        k: {"median": np.median(v), "p90": np.percentile(v, 90)} for k, v in series.items() if v
    }


def _quick(ctx: h.Context, sec: h.Section) -> h.Section:
    """No browser: the tiny SAM and the widget's kernel-side share of synthetic clicks."""
    from sdsam_nb.segment.clicks import ClickSegmenter
    from sdsam_nb.segment.widget import MaskPicker

    picker = MaskPicker(
        ClickSegmenter(build_model("tiny", ctx.device.type), h.disc_picture(*PICTURE_SIZE))
    )
    width, height = PICTURE_SIZE
    share = []
    for k, (fx, fy, positive) in enumerate(fractions(QUICK_CLICKS)):
        if k and k % h.SESSION == 0:
            picker.reset_button.click()
        picker.click(fx * width, fy * height, button=0 if positive else 2)
        share.append(picker.last_latency_s - picker.segmenter.last_latency_s)
    picker.close()
    sec.add(
        f"widget's kernel-side share of a click, median of {QUICK_CLICKS}", np.median(share), "s"
    )
    sec.notes.append("quick: tiny SAM in this process, no browser (the numbers mean nothing)")
    return sec


def run(ctx: h.Context) -> h.Section:
    sec = h.Section(NAME, TITLE)
    if ctx.quick:
        return _quick(ctx, sec)
    if bh.find_chromium() is None or importlib.util.find_spec("playwright") is None:
        return sec.skip("needs Chromium and the playwright package (`make browser`)")
    done = measure(CONFIGS, "cuda" if ctx.cuda else "cpu", ctx.log)
    sec.extra["results"] = {f"{m}/{w}": r for m, w, r in done}
    summaries = sec.extra["summaries"] = {f"{m}/{w}": summarize(r) for m, w, r in done}
    for key, s in summaries.items():
        model, widget = key.split("/")
        kind = {"layers": "layers", "floor": "a bare canvas drawing one disc per click"}
        label = f"{MODEL_LABEL[model]}, {kind.get(widget, 'before (full repaint)')}"

        def add(what: str, ms: float, **kw) -> None:
            sec.add(f"{label}: {what}", ms / 1000, "s", **kw)  # noqa: B023

        add(f"mouse-down to repaint, median of {CLICKS}", s["total"]["median"])
        add("mouse-down to repaint, p90", s["total"]["p90"])
        if widget != "floor":  # the floor has no SAM: its whole time is messaging
            share, target = s["widget"]["median"], {}
            if widget == "layers":  # the checkout's widget
                target = h.judged(share, "≤", TARGET_WIDGET_MS, ctx, f"≤ {TARGET_WIDGET_MS} ms")
            add("SAM's share, median", s["sam"]["median"])
            add("widget's share (kernel + browser), median", share, **target)
            add("widget's share, p90", s["widget"]["p90"])
            add("widget's share in the kernel, median", s["widget_kernel"]["median"])
        add("next animation frame after the repaint, median", s["frame"]["median"])
    new, old = summaries.get("tiny/layers"), summaries.get(f"tiny/{LEGACY_COMMIT}")
    if new and old:
        ratio = old["widget"]["median"] / new["widget"]["median"]
        sec.add("tiny SAM: widget's share, before / layers (medians)", ratio, "x")
    _notes(sec, ctx, summaries)
    return sec


def _notes(sec: h.Section, ctx: h.Context, summaries: dict) -> None:
    sec.notes.append(
        f"JupyterLab + headless Debian Chromium (software rendering) on {ctx.device}, one "
        f"{PICTURE_SIZE[0]}x{PICTURE_SIZE[1]} picture shown 768x576, {CLICKS} clicks per row "
        f"after {WARM_UP} untimed ones, sessions of {h.SESSION}; widget's share = repaint - "
        f"SAM's share; 'before' = sdsam_nb/segment/widget.py at {LEGACY_COMMIT[:10]}; what each "
        "row measures: README.md; the bare canvas is no strict lower bound (it varies from run "
        "to run on a busy machine)"
    )
    keys = ("none/floor", "subject/layers", "tiny/layers")
    floor, subject, tiny = (summaries.get(k) for k in keys)
    shares = [v["widget"]["median"] for k, v in summaries.items() if k.endswith("/layers")]
    if floor and subject and tiny and max(shares) > TARGET_WIDGET_MS:
        bare = floor["total"]["median"]
        sec.notes.append(
            f"the {TARGET_WIDGET_MS} ms target is not met: in this run a bare canvas that draws "
            f"one disc per click took {bare:.1f} ms from mouse-down to repaint, the messaging "
            "alone (browser, Jupyter server, kernel, and back); the layered widget adds "
            f"{subject['widget']['median'] - bare:.1f} ms to it for a subject-shaped mask (its "
            f"kernel part {subject['widget_kernel']['median']:.1f} ms) and "
            f"{tiny['widget']['median'] - bare:.1f} ms for the tiny SAM's speckled masks (its "
            f"kernel part {tiny['widget_kernel']['median']:.1f} ms)"
        )
    sec.notes.append(
        f"'the subject's true mask, no model' = {SubjectMask.__name__}: the picture's disc, drawn "
        f"as {subject_runs()} rows' runs (rectangles) as a trained SAM's mask of a subject would "
        "be; the random-weight and tiny models' speckled masks take tens of thousands"
    )
    if hasattr(os, "getloadavg"):
        sec.notes.append(
            f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other "
            "work on the machine slows every hop of a click: browser, server, kernel)"
        )
