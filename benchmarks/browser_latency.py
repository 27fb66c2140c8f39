"""Click to repaint in a real browser: ``MaskPicker`` in JupyterLab, clicked in headless Chromium.

What the user waits for after a click: the mouse-down in the page, the comm message to the
kernel, SAM's prompt encoder and mask decoder, the widget's drawing commands back, and the
browser decoding and composing them into the canvas. Measured with the real-browser test
harness (:mod:`benchmarks.browser_harness`): JupyterLab serves a notebook per configuration,
Debian's Chromium runs it headless under playwright, and a probe in the page records the
mouse-down event's own time stamp and every repaint of the visible canvas (a ``drawImage``
into it: the page's pixels change), plus the animation frame after the last one.

Per click the kernel reports SAM's share (``ClickSegmenter.last_latency_s``: the backend's
``predict``) and its own handling time; **the widget's share** is everything else, kernel and
browser together: mouse-down to the last repaint minus SAM's share. Configurations: the tiny
SAM, full-size ``vit_b`` and SAM 2.1 Hiera tiny (random weights, built by
``benchmarks.segmenters``' builders) and :class:`SubjectMask` (the subject's true mask at no
cost, shaped as a trained model's would be), each with the layered widget, and the tiny SAM with the
widget as it was before the layers (``sdsam_nb/segment/widget.py`` at
:data:`LEGACY_COMMIT`, read with ``git show``: every click re-sent the whole picture with the
overlay as a JPEG). A 1024x768 picture (shown 768x576), :data:`CLICKS` clicks in sessions of 5
(reset between them, not timed) after :data:`WARM_UP` untimed ones; include clicks are left
clicks on the subject, exclude clicks right clicks around it. Target: the layered widget's
median share ≤ :data:`TARGET_WIDGET_MS` ms. A first configuration measures what any click costs in
messaging: a bare ipycanvas ``Canvas`` in a box with an ``ipyevents.Event`` that draws one disc
per mouse-down (no SAM, no widget).

``--quick`` (no browser): the tiny SAM in this process, the widget's kernel-side share of
:data:`QUICK_CLICKS` synthetic clicks (``MaskPicker.click``).
"""

from __future__ import annotations

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
from .harness import REPO, Context, Section, median, p90

NAME = "browser_latency"
TITLE = "Click to repaint in JupyterLab + headless Chromium: SAM's share and the widget's"
LEGACY_COMMIT = "712499f3897eec144b711a91da55540ec8c8009c"
"""The last commit whose ``MaskPicker`` re-sent the whole picture per click."""
PICTURE_SIZE = (1024, 768)
CLICKS = 30
WARM_UP = 3
SESSION = 5
QUICK_CLICKS = 10
TARGET_WIDGET_MS = 15
CONFIGS = (
    ("none", "floor"),
    ("tiny", "legacy"),
    ("tiny", "layers"),
    ("subject", "layers"),
    ("vit_b", "layers"),
    ("sam2.1-hiera-tiny", "layers"),
)
MODEL_LABEL = {
    "none": "no SAM",
    "tiny": "tiny SAM",
    "subject": "the subject's true mask, no model",
    "vit_b": "vit_b",
    "sam2.1-hiera-tiny": "SAM 2.1 tiny",
}
CANVAS = ".jp-OutputArea-output canvas.sdsam-bench-canvas"


def picture() -> Image.Image:
    """The 1024x768 test picture: a red disc (the subject) on a gradient."""
    w, h = PICTURE_SIZE
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 1] = xx * 255 // w
    img[..., 2] = yy * 255 // h
    img[(xx - w / 2) ** 2 + (yy - h / 2) ** 2 < (h / 4) ** 2] = (220, 30, 30)
    return Image.fromarray(img)


def click_plan(n: int, seed: int = 0) -> list[tuple[float, float, bool]]:
    """``n`` clicks ``(fx, fy, positive)`` as fractions of the picture: sessions of
    :data:`SESSION` starting with an include click on the disc, then includes inside it and
    excludes around it."""
    rng = np.random.default_rng(seed)
    w, h = PICTURE_SIZE
    out = []
    for k in range(n):
        positive = k % SESSION in (0, 1, 3)
        r = rng.uniform(0, h / 5) if positive else rng.uniform(h / 3, h / 2.2)
        a = rng.uniform(0, 2 * np.pi)
        x = float(np.clip(w / 2 + r * np.cos(a), 4, w - 5))
        y = float(np.clip(h / 2 + r * np.sin(a), 4, h - 5))
        out.append((x / w, y / h, positive))
    return out


class SubjectMask:
    """A segmenter (the kit's interface) that answers every prompt with the subject's true
    mask, the disc of :func:`picture`, at no cost: the widget's share for a mask shaped like a
    trained SAM's (the disc's rows: about :func:`subject_runs` runs), where random weights
    answer with speckled masks of tens of thousands of runs."""

    backend = "benchmark-subject-mask"

    def __init__(self):
        w, h = PICTURE_SIZE
        yy, xx = np.mgrid[0:h, 0:w]
        self.mask = (xx - w / 2) ** 2 + (yy - h / 2) ** 2 < (h / 4) ** 2

    def embed(self, image):
        return None

    def predict(self, embedding, *, points, labels, box, mask_input, multimask):
        from sdsam_nb.segment.base import Prediction

        n = 3 if multimask else 1
        masks = np.repeat(self.mask[None], n, axis=0)
        return Prediction(masks, np.linspace(0.9, 0.8, n), np.zeros((n, 256, 256), np.float32))

    def predict_boxes(self, embedding, boxes, *, batch=16):
        return np.repeat(self.mask[None], len(boxes), axis=0)

    def info(self) -> dict:
        return {"family": self.backend}


def subject_runs() -> int:
    """Rows' runs of :class:`SubjectMask`'s mask layer at display size (the widget's rectangles)."""
    from sdsam_nb.segment.widget import layer_runs, mask_layer

    w, h = PICTURE_SIZE
    small = np.asarray(Image.fromarray(SubjectMask().mask).resize((768, 768 * h // w)))
    index = mask_layer(small)[0]
    return sum(len(runs) for runs in layer_runs(index))


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
    backend = next(b for b in full_size_backends() if b.name == key)
    return backend.build(torch.device(device))


def legacy_widget_source(commit: str = LEGACY_COMMIT) -> str:
    """``sdsam_nb/segment/widget.py`` at ``commit`` as a top-level module (absolute imports).

    Raises:
        RuntimeError: git or the commit is not available (e.g. a checkout without history).
    """
    try:
        done = subprocess.run(
            ["git", "show", f"{commit}:sdsam_nb/segment/widget.py"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"the widget before the layers (git {commit[:10]}): {exc}") from None
    source = re.sub(r"^from \.\. import ", "from sdsam_nb import ", done.stdout, flags=re.M)
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
(OUT / "started").write_text("1")
"""

PICKER = """\
from benchmarks.browser_latency import build_model, picture
from sdsam_nb.segment.clicks import ClickSegmenter
{widget_import}

model = build_model({model!r}, {device!r})
start = time.perf_counter()
segmenter = ClickSegmenter(model, picture())
embed_s = time.perf_counter() - start
picker = MaskPicker(segmenter)
picker.canvas.add_class("sdsam-bench-canvas")
clicks = []


def record(event):
    # After the picker's own handler (registered first): this click's times.
    if event.get("event") != "mousedown":
        return
    clicks.append(
        {{
            "kernel_s": picker.last_latency_s,
            "sam_s": picker.segmenter.last_latency_s,
            "points": len(picker.points),
        }}
    )
    tmp = OUT / "clicks.json.tmp"
    tmp.write_text(json.dumps(clicks))
    tmp.replace(OUT / "clicks.json")


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
clicks = []


def record(event):
    if event.get("event") != "mousedown":
        return
    start = time.perf_counter()
    with hold_canvas():
        canvas.clear()
        canvas.fill_style = "rgb(0, 255, 0)"
        canvas.fill_circle(event["relativeX"], event["relativeY"], 6)
    clicks.append({{"kernel_s": time.perf_counter() - start, "sam_s": 0.0, "points": len(clicks)}})
    tmp = OUT / "clicks.json.tmp"
    tmp.write_text(json.dumps(clicks))
    tmp.replace(OUT / "clicks.json")


events.on_dom_event(record)
(OUT / "ready").write_text(json.dumps({{"embed_s": 0.0}}))
widgets.VBox([surface, widgets.HTML(SURFACE_CSS, layout=widgets.Layout(display="none"))])
"""


def write_notebook(path: Path, out: Path, model: str, widget: str, device: str) -> None:
    import nbformat

    widget_import = (
        "from sdsam_nb.segment.widget import MaskPicker"
        if widget == "layers"
        else "from legacy_widget import MaskPicker"
    )
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    setup = SETUP.format(out=str(out), repo=str(REPO), flush_denormal=device == "cpu")
    if widget == "floor":
        picker = FLOOR.format()
    else:
        picker = PICKER.format(model=model, device=device, widget_import=widget_import)
    nb.cells = [nbformat.v4.new_code_cell(setup), nbformat.v4.new_code_cell(picker)]
    nb.cells[1].metadata["jupyter"] = {"source_hidden": True}
    nbformat.write(nb, path)


# --------------------------------------------------------------------------- measuring


def measure_config(server, chromium, root: Path, model: str, widget: str, device: str):
    """Open the notebook of one configuration, click :data:`WARM_UP` + :data:`CLICKS` times
    and return the per-click timings (ms) and the embedding time."""
    stem = f"{model}-{widget}"
    out = root / f"out-{stem}"
    out.mkdir()
    name = f"bench-{stem}.ipynb"
    write_notebook(root / name, out, model, widget, device)
    page = chromium.page

    def detail() -> str:
        return f"{server.log_tail()}\n{chromium.console_tail()}"

    workspace = re.sub(r"[^a-z0-9]+", "-", stem)  # no dots in a workspace name
    bh.open_notebook(page, server, name, timeout=60, workspace=workspace)
    bh.run_all_confirmed(page, out / "started", tries=3, timeout=15, detail=detail)
    bh.wait_for((out / "ready").exists, 300, f"{model}: the picker", 0.2, detail)
    ready = json.loads((out / "ready").read_text())
    canvas = page.locator(CANVAS)
    canvas.wait_for(state="visible", timeout=30_000)
    canvas.scroll_into_view_if_needed(timeout=10_000)
    page.wait_for_timeout(300)
    box = canvas.bounding_box()
    bh.install_paint_probe(page, CANVAS)
    reset = page.locator(".sdsam-picker button", has_text="reset").first

    def clicks_done(n: int):
        try:
            done = json.loads((out / "clicks.json").read_text())
        except (OSError, ValueError):
            return None
        return done[n - 1] if len(done) >= n else None

    plan = click_plan(WARM_UP, seed=1) + click_plan(CLICKS)
    rows = []
    for k, (fx, fy, positive) in enumerate(plan):
        session = k - WARM_UP
        if widget != "floor" and (k == WARM_UP or (session > 0 and session % SESSION == 0)):
            reset.click()
            page.get_by_text("0 points (0 include").wait_for(timeout=30_000)
            page.wait_for_timeout(200)
        timing = bh.timed_click(
            page,
            box["x"] + fx * box["width"],
            box["y"] + fy * box["height"],
            lambda n=k + 1: clicks_done(n),
            button="left" if positive else "right",
            timeout=60,
        )
        if k >= WARM_UP:
            kernel = timing.pop("done")
            timing["sam"] = 1000 * kernel["sam_s"]
            timing["kernel"] = 1000 * kernel["kernel_s"]
            rows.append(timing)
    server.shutdown_kernels()
    return {"clicks": rows, "embed_s": ready["embed_s"], "css_width": box["width"]}


def summarize(result: dict) -> dict:
    """Medians and 90th percentiles (ms) of one configuration's clicks."""
    rows = result["clicks"]
    series = {
        "total": [r["last_paint"] for r in rows],
        "frame": [r["last_frame"] for r in rows if r["last_frame"] is not None],
        "first": [r["first_paint"] for r in rows],
        "sam": [r["sam"] for r in rows],
        "widget": [r["last_paint"] - r["sam"] for r in rows],
        "widget_kernel": [r["kernel"] - r["sam"] for r in rows],
        "browser": [r["last_paint"] - r["kernel"] for r in rows],
    }
    return {k: {"median": median(v), "p90": p90(v)} for k, v in series.items() if v}


def _quick(ctx: Context, sec: Section) -> Section:
    """No browser: the tiny SAM and the widget's kernel-side share of synthetic clicks."""
    import sdsam_nb
    from sdsam_nb.segment.clicks import ClickSegmenter
    from sdsam_nb.segment.widget import MaskPicker

    picker = MaskPicker(ClickSegmenter(sdsam_nb.load_sam("tiny", device=ctx.device), picture()))
    w, h = PICTURE_SIZE
    share = []
    for k, (fx, fy, positive) in enumerate(click_plan(QUICK_CLICKS)):
        if k and k % SESSION == 0:
            picker.reset_button.click()
        picker.click(fx * w, fy * h, button=0 if positive else 2)
        share.append(picker.last_latency_s - picker.segmenter.last_latency_s)
    picker.close()
    sec.add(f"widget's kernel-side share of a click, median of {QUICK_CLICKS}", median(share), "s")
    sec.notes.append("quick: tiny SAM in this process, no browser (the numbers mean nothing)")
    return sec


def run(ctx: Context) -> Section:
    sec = Section(NAME, TITLE)
    if ctx.quick:
        return _quick(ctx, sec)
    chromium_path = bh.find_chromium()
    try:
        import playwright  # noqa: F401
    except ImportError:
        chromium_path = None
    if chromium_path is None:
        sec.status = "skipped"
        sec.reason = "needs Chromium and the playwright package (`make browser`)"
        return sec
    device = "cuda" if ctx.cuda else "cpu"
    try:
        legacy = legacy_widget_source()
    except RuntimeError as exc:
        legacy = None
        sec.notes.append(f"before-the-layers rows left out: {exc}")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="sdsam-browser-bench-") as tmp:
        home, root = Path(tmp) / "home", Path(tmp) / "root"
        root.mkdir()
        if legacy is not None:
            (root / "legacy_widget.py").write_text(legacy)
        env = {"SDSAM_CACHE": str(_cache_dir()), "HF_HUB_OFFLINE": "1"}
        server = bh.LabServer(home, root, env=env)
        chromium = None
        try:
            server.start(timeout=60)
            chromium = bh.Chromium(chromium_path)
            for model, widget in CONFIGS:
                if widget == "legacy" and legacy is None:
                    continue
                key = f"{model}/{widget}"
                ctx.log(f"{NAME}: {key}: {CLICKS} clicks in Chromium")
                start = time.perf_counter()
                results[key] = measure_config(server, chromium, root, model, widget, device)
                ctx.log(f"{NAME}: {key} done in {time.perf_counter() - start:.0f} s")
        finally:
            if chromium is not None:
                chromium.close()
            server.stop()
    sec.extra["results"] = results
    summaries = {key: summarize(r) for key, r in results.items()}
    sec.extra["summaries"] = summaries
    for key, s in summaries.items():
        model, widget = key.split("/")
        kind = {
            "layers": "layers",
            "legacy": "before (full repaint)",
            "floor": "a bare canvas drawing one disc per click",
        }[widget]
        label = f"{MODEL_LABEL[model]}, {kind}"
        judge = widget == "layers"

        def add(what: str, ms: float, **kw) -> None:
            sec.add(f"{label}: {what}", ms / 1000, "s", **kw)  # noqa: B023

        if widget == "floor":  # no SAM: its whole time is messaging
            add(f"mouse-down to repaint, median of {CLICKS}", s["total"]["median"])
            add("mouse-down to repaint, p90", s["total"]["p90"])
            add("next animation frame after the repaint, median", s["frame"]["median"])
            continue
        add(f"mouse-down to repaint, median of {CLICKS}", s["total"]["median"])
        add("mouse-down to repaint, p90", s["total"]["p90"])
        add("SAM's share, median", s["sam"]["median"])
        add(
            "widget's share (kernel + browser), median",
            s["widget"]["median"],
            target=f"≤ {TARGET_WIDGET_MS} ms" if judge else "",
            met=(s["widget"]["median"] <= TARGET_WIDGET_MS) if judge else None,
        )
        add("widget's share, p90", s["widget"]["p90"])
        add("widget's share in the kernel, median", s["widget_kernel"]["median"])
        add("next animation frame after the repaint, median", s["frame"]["median"])
    new, old = summaries.get("tiny/layers"), summaries.get("tiny/legacy")
    if new and old:
        sec.add(
            "tiny SAM: widget's share, before / layers (medians)",
            old["widget"]["median"] / new["widget"]["median"],
            "x",
        )

    sec.notes.append(
        f"JupyterLab + headless Debian Chromium (software rendering) on {ctx.device}, one "
        f"{PICTURE_SIZE[0]}x{PICTURE_SIZE[1]} picture shown 768x576, {CLICKS} clicks per row "
        f"after {WARM_UP} untimed ones, sessions of {SESSION}; repaint = the visible canvas drawn "
        "into (pixels changed), timed from the mouse-down event's time stamp; 'next animation "
        "frame' = the requestAnimationFrame after it; SAM's share = ClickSegmenter.last_latency_s "
        "(the backend's predict); widget's share = repaint - SAM's share; "
        f"'before' = sdsam_nb/segment/widget.py at {LEGACY_COMMIT[:10]} (full picture per click); "
        "'a bare canvas' = an ipycanvas Canvas + ipyevents Event that draws one disc per "
        "mouse-down and nothing else: what any click costs in messaging (kernel, Jupyter server, "
        "browser); it is not a strict lower bound (it varies from run to run on a busy machine)"
    )
    floor, subject = summaries.get("none/floor"), summaries.get("subject/layers")
    shares = [v["widget"]["median"] for k, v in summaries.items() if k.endswith("/layers")]
    if floor and subject and shares and max(shares) > TARGET_WIDGET_MS:
        bare = floor["total"]["median"]
        sec.notes.append(
            f"the {TARGET_WIDGET_MS} ms target is not met: in this run a bare canvas that draws "
            f"one disc per click took {bare:.1f} ms from mouse-down to repaint, the messaging "
            "alone (browser, Jupyter server, kernel, and back); the layered widget adds "
            f"{subject['widget']['median'] - bare:.1f} ms to it for a subject-shaped mask (its "
            f"kernel part {subject['widget_kernel']['median']:.1f} ms) and "
            f"{summaries['tiny/layers']['widget']['median'] - bare:.1f} ms for the tiny SAM's "
            "speckled masks (sent as a PNG, which the browser loads as an image)"
            if "tiny/layers" in summaries
            else f"the {TARGET_WIDGET_MS} ms target is not met (bare canvas: {bare:.1f} ms)"
        )
    sec.notes.append(
        f"'the subject's true mask, no model' = {SubjectMask.__name__}: every prompt answered "
        f"with the disc of the picture at no cost, drawn as {subject_runs()} rows' runs "
        "(rectangles) as a trained SAM's mask of a subject would be; the random-weight and "
        "tiny models answer with speckled masks of tens of thousands of runs, which the widget "
        f"sends as a PNG (more than MAX_RUNS = {_max_runs()})"
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if load is not None:
        sec.notes.append(
            f"load average at the end: {load:.1f} on {os.cpu_count()} cores (other work on the "
            "machine slows every hop of a click: browser, server, kernel)"
        )
    return sec


def _max_runs() -> int:
    from sdsam_nb.segment.widget import MAX_RUNS

    return MAX_RUNS


def _cache_dir() -> Path:
    import sdsam_nb

    return Path(os.environ.get("SDSAM_CACHE") or sdsam_nb.cache_dir())
