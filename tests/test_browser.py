"""MaskPicker in a real browser: JupyterLab + headless Chromium, clicks checked in the kernel.

The notebook (written by the test) shows a MaskPicker over a tiny model (segment_anything's
tiny SAM, then transformers' tiny SAM 2: the picker talks to both through one interface) and,
after every
change, writes the segmenter's state to ``state.json`` through ``picker.on_change``: the test
clicks with playwright and reads what the *kernel* saw. Run it with ``pytest -m browser``.

In CI (``CI=true``) a missing Chromium is a failure; elsewhere it skips. Every wait is bounded
and the server and browser are always shut down.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nbformat
import pytest
from browser_harness import Chromium, LabServer, find_chromium, open_notebook, run_all_confirmed
from browser_harness import wait_for as _wait_for
from conftest import load_or_skip

pytestmark = pytest.mark.browser

IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
IMAGE_W, IMAGE_H = 900, 600  # wider than the default display width (768): clicks are scaled

SETUP = """\
import pathlib
OUT = pathlib.Path({out!r})
(OUT / "started").write_text("1")
"""

PICKER = """\
import hashlib
import json

import numpy as np
from PIL import Image

import sdsam_nb
from sdsam_nb.segment.clicks import ClickSegmenter
from sdsam_nb.segment.widget import MaskPicker

yy, xx = np.mgrid[0:{h}, 0:{w}]
pixels = np.stack([xx * 255 // {w}, yy * 255 // {h}, np.full_like(xx, 90)], -1).astype(np.uint8)
pixels[(xx - {w} // 2) ** 2 + (yy - {h} // 2) ** 2 < ({h} // 4) ** 2] = (220, 30, 30)
picker = MaskPicker(ClickSegmenter(sdsam_nb.load_sam({model!r}), Image.fromarray(pixels)))
picker.canvas.add_class("sdsam-test-canvas")
changes = 0


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


def write_notebook(path: Path, out: Path, model: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [
        nbformat.v4.new_code_cell(SETUP.format(out=str(out))),
        nbformat.v4.new_code_cell(PICKER.format(w=IMAGE_W, h=IMAGE_H, model=model)),
    ]
    # Collapse the long cell's source so that the widget sits in the first screen.
    nb.cells[1].metadata["jupyter"] = {"source_hidden": True}
    nbformat.write(nb, path)


@pytest.fixture
def chromium_path() -> str:
    path = find_chromium()
    if path is None:
        message = "Chromium not found: install it with `make browser` (apt-get install chromium)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(params=["tiny", "tiny-sam2"])
def lab(request, chromium_path, tmp_path):
    """JupyterLab serving a folder with the picker notebook over the model ``request.param``
    (built here first); the kernel uses the test cache.

    Asks for ``chromium_path`` first so that a missing browser skips (or fails) at once.
    """
    load_or_skip(request.param)
    root = tmp_path / "notebooks"
    out = tmp_path / "kernel-out"
    root.mkdir()
    out.mkdir()
    write_notebook(root / "picker.ipynb", out, request.param)
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

    def detail() -> str:
        return f"{lab.log_tail()}\n{browser.console_tail()}"

    def wait_for(check, timeout, what):
        return _wait_for(check, timeout, what, 0.1, detail)

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

    open_notebook(page, lab, "picker.ipynb", timeout=60)
    run_all_confirmed(page, out / "started", tries=3, timeout=10, detail=detail)
    initial = state_after(0, timeout=90)  # imports torch, loads the tiny SAM
    wait_for((out / "client_ready").exists, 30, "the canvas view to report client_ready")
    assert initial["points"] == [] and initial["mask_area"] == 0
    assert initial["display_size"] == [768, 512]

    canvas = page.locator(".jp-OutputArea-output canvas.sdsam-test-canvas")
    canvas.wait_for(state="visible", timeout=30_000)
    canvas.scroll_into_view_if_needed(timeout=10_000)
    page.wait_for_timeout(200)  # settle after scrolling
    box = canvas.bounding_box()
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
    picker.get_by_text("box · mask").wait_for(timeout=10_000)
    page.wait_for_timeout(300)
    picker.screenshot(path=str(shot.with_name(shot.stem + "-box.png")), timeout=10_000)

    elapsed = time.monotonic() - started
    assert elapsed < 180, f"browser round trip took {elapsed:.0f} s"
