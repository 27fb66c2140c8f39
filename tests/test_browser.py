"""MaskPicker in a real browser: JupyterLab + headless Chromium, clicks checked in the kernel.

The notebook (written by the test) shows a MaskPicker over a tiny model (segment_anything's
tiny SAM, then transformers' tiny SAM 2: the picker talks to both through one interface) and,
after every change, writes the segmenter's state to ``state.json`` through
``picker.on_change``: the test clicks with playwright and reads what the *kernel* saw, then
reads the canvas' pixels in the page (the browser composes the picture, mask and marker
layers) and compares them with what the kernel says it sent. Last, a cell keeps the kernel
busy: the status line must say so, and the clicks made meanwhile must be computed once, as
one action. Run it with ``pytest -m browser``.

In CI (``CI=true``) a missing Chromium is a failure; elsewhere it skips. Every wait is bounded
and the server and browser are always shut down.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import load_or_skip

from benchmarks.browser_harness import (
    Chromium,
    LabServer,
    find_chromium,
    write_notebook,
)
from benchmarks.browser_harness import wait_for as _wait_for

pytestmark = pytest.mark.browser

IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
IMAGE_W, IMAGE_H = 900, 600  # wider than the default display width (768): clicks are scaled
CANVAS = ".jp-OutputArea-output canvas.sdsam-test-canvas"

SETUP = """\
import pathlib
OUT = pathlib.Path({out!r})
(OUT / "started").write_text("1")
"""

PICKER = """\
import hashlib
import json

import cv2
import numpy as np
from PIL import Image

import sdsam_nb
import sdsam_nb.segment.widget
from sdsam_nb.segment.clicks import ClickSegmenter
from sdsam_nb.segment.widget import MaskPicker

yy, xx = np.mgrid[0:{h}, 0:{w}]
pixels = np.stack([xx * 255 // {w}, yy * 255 // {h}, np.full_like(xx, 90)], -1).astype(np.uint8)
pixels[(xx - {w} // 2) ** 2 + (yy - {h} // 2) ** 2 < ({h} // 4) ** 2] = (220, 30, 30)
picker = MaskPicker(ClickSegmenter(sdsam_nb.load_sam({model!r}), Image.fromarray(pixels)))
picker.canvas.add_class("sdsam-test-canvas")
changes = 0
# Mouse events the canvas itself sent (ipycanvas' views send every one they see): none may
# come, the canvas ignores the mouse and the surface around it gets it.
canvas_events = []
for kind in ("down", "move", "up"):
    getattr(picker.canvas, f"on_mouse_{{kind}}")(lambda x, y, k=kind: canvas_events.append(k))


def display_xy(p, x, y):
    (iw, ih), (dw, dh) = p.image_size, p.display_size
    return (x + 0.5) * dw / iw, (y + 0.5) * dh / ih


def composed(p):
    # The mask layer's alpha and the picture with the layer over it, composed here as the
    # browser composes the layers (the layer: the mask at display size, tinted, outline opaque).
    w = sdsam_nb.segment.widget
    dw, dh = p.display_size
    small = cv2.resize(p.mask.view(np.uint8), (dw, dh), interpolation=cv2.INTER_NEAREST_EXACT)
    alpha = np.zeros((dh, dw), np.uint8)
    layer = w.mask_layer(small.view(bool))
    if layer is not None:
        index, x, y = layer
        tint = np.array([0, w.MASK_ALPHA, 255], np.uint8)[index]
        alpha[y : y + index.shape[0], x : x + index.shape[1]] = tint
    a = alpha[..., None] / 255.0
    return alpha, np.rint(p.display_image * (1 - a) + np.array(w.MASK_COLOR) * a).astype(np.uint8)


def probes(p):
    # A display pixel deep inside the mask and one deep outside it, away from the markers,
    # with the RGB the canvas should show there.
    alpha, rendered = composed(p)
    inside = alpha == sdsam_nb.segment.widget.MASK_ALPHA
    out = {{}}
    for name, region in (("inside", inside), ("outside", alpha == 0)):
        depth = cv2.distanceTransform(region.astype(np.uint8), cv2.DIST_L2, 3)
        for x, y in p.points:
            dx, dy = (int(v) for v in display_xy(p, x, y))
            depth[max(0, dy - 12) : dy + 13, max(0, dx - 12) : dx + 13] = 0
        y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
        if depth[y, x] >= 3:
            out[name] = [int(x), int(y), rendered[y, x].tolist()]
    return out


def save_state(p):
    global changes
    m = p.mask
    state = {{
        "changes": changes,
        "points": [list(xy) for xy in p.points],
        "labels": list(p.labels),
        "box": p.box,
        "chosen": p.segmenter.chosen,
        "candidates": len(p.segmenter.candidates),
        "mask_area": int(m.sum()),
        "mask_sha1": hashlib.sha1(np.packbits(m).tobytes()).hexdigest(),
        "display_size": list(p.display_size),
        "latency_s": p.last_latency_s,
        "actions": [a["op"] for a in p.segmenter.to_dict()["actions"]],
        "probes": probes(p),
        "markers": [list(display_xy(p, x, y)) for x, y in p.points],
        "canvas_events": len(canvas_events),
    }}
    changes += 1
    tmp = OUT / "state.json.tmp"
    tmp.write_text(json.dumps(state))
    tmp.replace(OUT / "state.json")


save_state(picker)
picker.on_change(save_state)
picker.canvas.on_client_ready(lambda: (OUT / "client_ready").write_text("1"))
picker
"""


@pytest.fixture
def chromium_path() -> str:
    path = find_chromium()
    if path is None:
        message = "Chromium not found: install it with `make browser` (apt-get install chromium)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(params=["tiny", pytest.param("tiny-sam2", marks=pytest.mark.long)])
def lab(request, chromium_path, tmp_path):
    """JupyterLab serving a folder with the picker notebook over the model ``request.param``
    (built here first); the kernel uses the test cache. make test clicks over segment_anything's
    SAM; make test-all also over SAM 2 (transformers), whose widget tests run in-process.

    Asks for ``chromium_path`` first so that a missing browser skips (or fails) at once.
    """
    load_or_skip(request.param)
    root = tmp_path / "notebooks"
    out = tmp_path / "kernel-out"
    root.mkdir()
    out.mkdir()
    picker = PICKER.format(w=IMAGE_W, h=IMAGE_H, model=request.param)
    write_notebook(root / "picker.ipynb", SETUP.format(out=str(out)), picker)
    env = {"SDSAM_CACHE": os.environ["SDSAM_CACHE"], "HF_HUB_OFFLINE": "1"}
    server = LabServer(tmp_path / "jupyter-home", root, env=env)
    try:
        server.start(timeout=60)
        server.out = out
        yield server
    finally:
        server.stop()


@pytest.fixture
def browser(chromium_path):
    chromium = Chromium(chromium_path)
    try:
        yield chromium
    finally:
        chromium.close()


def test_clicks_in_chromium_reach_the_kernel(lab, browser):
    started = time.monotonic()
    page = browser.page
    out: Path = lab.out

    def wait_for(check, timeout, what):
        return _wait_for(check, timeout, what, 0.1, lambda: browser.detail(lab))

    def state() -> dict | None:
        try:
            return json.loads((out / "state.json").read_text())
        except (OSError, ValueError):
            return None

    def state_after(n: int, timeout: float = 20.0) -> dict:
        return wait_for(
            lambda: (s := state()) is not None and s["changes"] >= n and s,
            timeout,
            f"change #{n} in the kernel",
        )

    browser.run_notebook(lab, "picker.ipynb", out / "started")
    initial = state_after(0, timeout=90)  # imports torch, loads the tiny SAM
    wait_for((out / "client_ready").exists, 30, "the canvas view to report client_ready")
    assert initial["points"] == [] and initial["mask_area"] == 0
    assert initial["display_size"] == [768, 512]

    box = browser.canvas_box(CANVAS)
    assert box is not None and box["width"] > 100
    scale_x, scale_y = IMAGE_W / box["width"], IMAGE_H / box["height"]

    # Left click: an include point at the image pixel under the mouse.
    css = (box["width"] * 0.5, box["height"] * 0.5)
    page.mouse.click(box["x"] + css[0], box["y"] + css[1])
    first = state_after(1)
    assert first["labels"] == [1]
    ((x, y),) = first["points"]
    assert abs(x - css[0] * scale_x) <= 2 and abs(y - css[1] * scale_y) <= 2
    assert first["mask_area"] > 0 and first["mask_sha1"] != initial["mask_sha1"]
    picker = page.locator(".sdsam-picker")
    picker.get_by_text("1 point (1 include, 0 exclude)").wait_for(timeout=10_000)
    page.wait_for_timeout(300)  # let the canvas paint the last batch
    check_layers(page, first)
    shot = Path(os.environ.get("SDSAM_BROWSER_SCREENSHOT", out / "picker.png"))
    picker.screenshot(path=str(shot.with_name(shot.stem + "-first.png")), timeout=10_000)

    # Right click: an exclude point, and no context menu (prevent_default_action).
    css2 = (box["width"] * 0.2, box["height"] * 0.3)
    page.mouse.click(box["x"] + css2[0], box["y"] + css2[1], button="right")
    second = state_after(2)
    assert second["labels"] == [1, 0] and len(second["points"]) == 2
    x2, y2 = second["points"][1]
    assert abs(x2 - css2[0] * scale_x) <= 2 and abs(y2 - css2[1] * scale_y) <= 2
    assert second["mask_sha1"] != first["mask_sha1"]
    assert page.locator(".lm-Menu").count() == 0, "the browser/Lab context menu opened"

    # The front end shows the new state: status line, then a screenshot to look at.
    picker.get_by_text("2 points (1 include, 1 exclude)").wait_for(timeout=10_000)
    page.wait_for_timeout(300)  # let the canvas paint the last batch
    check_layers(page, second)
    picker.screenshot(path=str(shot), timeout=10_000)
    assert shot.stat().st_size > 10_000

    # The undo button goes through the kernel too.
    picker.locator("button", has_text="undo").click()
    third = state_after(3)
    assert third["points"] == first["points"] and third["mask_sha1"] == first["mask_sha1"]

    # A candidate button: SAM's three answers to one point, pick another than the best.
    assert third["candidates"] == 3
    other = (third["chosen"] + 1) % 3
    picker.locator("button", has_text=f"{other + 1}: ").click()
    fourth = state_after(4)
    assert fourth["chosen"] == other and fourth["points"] == third["points"]

    # Box mode: a drag from one corner to the other sets the box, in image pixels.
    picker.locator("button", has_text="box").first.click()
    corners = [
        (box["width"] * 0.3, box["height"] * 0.25),
        (box["width"] * 0.7, box["height"] * 0.75),
    ]
    page.mouse.move(box["x"] + corners[0][0], box["y"] + corners[0][1])
    page.mouse.down()
    page.mouse.move(box["x"] + corners[1][0], box["y"] + corners[1][1], steps=5)
    page.mouse.up()
    fifth = state_after(5)
    expected = [corners[0][0] * scale_x, corners[0][1] * scale_y]
    expected += [corners[1][0] * scale_x, corners[1][1] * scale_y]
    assert fifth["box"] is not None and len(fifth["points"]) == 1
    assert all(abs(a - b) <= 2 for a, b in zip(fifth["box"], expected, strict=True)), fifth["box"]
    assert fifth["canvas_events"] == 0, "the canvas sent its own mouse events to the kernel"
    picker.get_by_text("box · mask").wait_for(timeout=10_000)
    page.wait_for_timeout(300)
    picker.screenshot(path=str(shot.with_name(shot.stem + "-box.png")), timeout=10_000)

    # A cell keeps the kernel busy: the status line says so at once, and the clicks made
    # meanwhile (right clicks: exclude points in every mode) are computed once, as one action.
    # (sent as Lab sends a cell: pre_run_cell and post_run_cell fire; no cell is added)
    page.evaluate(
        """() => jupyterapp.shell.currentWidget.sessionContext.session.kernel.requestExecute(
            { code: 'import time; time.sleep(3)', silent: false, store_history: false }
        ) && true"""
    )
    picker.get_by_text("kernel busy running a cell").wait_for(timeout=10_000)
    queued = [(0.1, 0.1), (0.9, 0.15), (0.85, 0.9)]
    for fx, fy in queued:
        x, y = box["x"] + box["width"] * fx, box["y"] + box["height"] * fy
        page.mouse.click(x, y, button="right")
    assert state()["changes"] == 5, "a click was computed while the kernel was busy"
    sixth = state_after(6, timeout=30)
    assert sixth["actions"][-1] == "points" and sixth["labels"][-3:] == [0, 0, 0]
    assert len(sixth["points"]) == len(fifth["points"]) + 3
    for (x, y), (fx, fy) in zip(sixth["points"][-3:], queued, strict=True):
        assert abs(x - box["width"] * fx * scale_x) <= 2
        assert abs(y - box["height"] * fy * scale_y) <= 2
    picker.get_by_text("SAM ran once for all of them").wait_for(timeout=10_000)
    assert picker.get_by_text("kernel busy").count() == 0
    time.sleep(0.5)
    assert state()["changes"] == 6, "the queued clicks were computed more than once"
    page.wait_for_timeout(300)
    check_layers(page, sixth)

    elapsed = time.monotonic() - started
    assert elapsed < 180, f"browser round trip took {elapsed:.0f} s"


def check_layers(page, state: dict) -> None:
    """The canvas in the page shows what the kernel sent: a green or red marker at each point,
    the tinted mask inside it and the bare picture outside (within JPEG's error: the picture
    layer is a JPEG, the mask layer whole-pixel rectangles)."""
    spots = [(round(x - 0.5), round(y - 0.5)) for x, y in state["markers"]]
    probes = state["probes"]
    assert "inside" in probes and "outside" in probes, probes
    spots += [(x, y) for x, y, _ in probes.values()]
    pixels = page.evaluate(
        """([selector, spots]) => {
            const ctx = document.querySelector(selector).getContext('2d');
            return spots.map(([x, y]) => Array.from(ctx.getImageData(x, y, 1, 1).data));
        }""",
        [CANVAS, spots],
    )
    markers, seen = pixels[: len(state["markers"])], pixels[len(state["markers"]) :]
    for label, (r, g, b, a) in zip(state["labels"], markers, strict=True):
        want = (0, 255, 0) if label == 1 else (255, 0, 0)
        assert a == 255 and max(abs(r - want[0]), abs(g - want[1]), abs(b - want[2])) <= 40, (
            label,
            (r, g, b),
        )
    for (name, (x, y, rgb)), got in zip(probes.items(), seen, strict=True):
        error = max(abs(int(u) - int(v)) for u, v in zip(rgb, got[:3], strict=True))
        assert error <= 16, f"{name} the mask at ({x}, {y}): canvas {got[:3]}, kernel {rgb}"
