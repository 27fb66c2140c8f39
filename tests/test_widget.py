"""MaskPicker without a browser: events go through the widgets' own message handlers.

A mouse event is the dict ipyevents' front end sends (CSS pixels plus the element's bounding
rectangle), handed to ``Event._handle_custom_msg`` exactly as the kernel's comm would hand it
over. What the widget draws is read back from the ipycanvas command stream (the canvas
manager's ``_send_custom`` is recorded and decoded, layer by layer) and compared with the mask
layer computed here (:func:`mask_rgba`, :func:`rendered`). The tiny SAM has random weights:
assertions are on coordinates, labels, state and pixels, never on how good a mask looks.
"""

from __future__ import annotations

import ast
import asyncio
import io
import sys
import time
import types
from pathlib import Path

import cv2
import IPython
import numpy as np
import pytest
from conftest import load_or_skip
from ipycanvas import canvas as ipc
from IPython.core.events import EventManager, available_events
from PIL import Image

from sdsam_nb import masks
from sdsam_nb.segment import widget
from sdsam_nb.segment.base import as_segmenter
from sdsam_nb.segment.clicks import ClickSegmenter
from sdsam_nb.segment.widget import MaskPicker

_NAMES = {index: name for name, index in ipc.COMMANDS.items()}
_ATTRS = {index: name for name, index in ipc.Canvas.ATTRS.items()}


def noise_image(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def smooth_image(w: int, h: int) -> Image.Image:
    """A gradient with a dark disc: JPEG (what put_image_data sends) keeps it close."""
    yy, xx = np.mgrid[0:h, 0:w]
    a = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 128)], -1)
    a[(xx - w / 2) ** 2 + (yy - h / 2) ** 2 < (h / 4) ** 2] = (40, 20, 20)
    return Image.fromarray(a.astype(np.uint8))


def expected_overlay(picture: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """What the browser shows under the markers, computed here on its own: the mask tinted at
    115/255 over the picture, its outline (mask pixels with a 4-neighbour outside) opaque."""
    out = picture.astype(np.float64)
    a = widget.MASK_ALPHA / 255
    out[mask] = np.rint(out[mask] * (1 - a) + np.array(widget.MASK_COLOR) * a)
    padded = np.pad(mask, 1, mode="edge")
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    out[mask & ~inner] = widget.MASK_COLOR
    return out.astype(np.uint8)


def mask_rgba(picker) -> np.ndarray:
    """The mask layer the overlay should show, ``dh x dw x 4 uint8``: the mask at display size
    (nearest pixel centres), MASK_COLOR at MASK_ALPHA inside, opaque on its outline."""
    dw, dh = picker.display_size
    small = cv2.resize(picker.mask.view(np.uint8), (dw, dh), interpolation=cv2.INTER_NEAREST_EXACT)
    out = np.zeros((dh, dw, 4), np.uint8)
    layer = widget.mask_layer(small.view(bool))
    if layer is not None:
        index, x, y = layer
        crop = out[y : y + index.shape[0], x : x + index.shape[1]]
        crop[index > 0, :3] = widget.MASK_COLOR
        crop[..., 3] = np.array([0, widget.MASK_ALPHA, 255], np.uint8)[index]
    return out


def rendered(picker) -> np.ndarray:
    """The picture with :func:`mask_rgba` over it, ``dh x dw x 3 uint8``, composed as the
    browser composes the layers ("source-over"), without the markers."""
    rgba = mask_rgba(picker).astype(np.float32)
    a = rgba[..., 3:] / 255.0
    return np.rint(picker.display_image * (1.0 - a) + rgba[..., :3] * a).astype(np.uint8)


class Drawn:
    """Decoded ipycanvas commands per batch: ``(layer model id, name, args, buffers)``;
    ``set`` becomes ``set:<attr>``; ``switchCanvas`` only changes the layer that follows."""

    def __init__(self):
        self.batches: list[list[tuple[str, str, list, list[bytes]]]] = []
        self.current: str | None = None

    def record(self, command, buffers=()):
        commands = command if command and isinstance(command[0], list) else [command]
        buffers = list(buffers)
        batch = []
        for c in commands:
            name, args = _NAMES[c[0]], c[1]
            if name == "switchCanvas":
                self.current = args[0].removeprefix("IPY_MODEL_")
                continue
            if name == "set":
                name, args = f"set:{_ATTRS[args[0]]}", [args[1]]
            n = c[2] if len(c) > 2 else 0
            batch.append((self.current, name, args, buffers[:n]))
            buffers = buffers[n:]
        self.batches.append(batch)

    @property
    def last(self):
        return self.batches[-1]

    def on(self, layer, batch=None) -> list[tuple[str, list, list[bytes]]]:
        """The commands of ``batch`` (default: the last) that went to canvas ``layer``."""
        batch = self.last if batch is None else batch
        return [(n, a, b) for lid, n, a, b in batch if lid == layer.model_id]

    def names(self, layer, batch=None):
        return [name for name, _, _ in self.on(layer, batch)]

    def markers(self, picker, batch=None):
        """``[(x, y, css colour)]`` of the coloured discs on the markers layer, in order."""
        out, fill = [], None
        for name, args, _ in self.on(picker.layers["overlay"], batch):
            if name == "set:fill_style":
                fill = args[0]
            elif name == "fillCircle" and fill != "white":
                out.append((args[0], args[1], fill))
        return out

    def rects(self, picker, batch=None):
        on = self.on(picker.layers["overlay"], batch)
        return [args for name, args, _ in on if name == "strokeRect"]

    def mask_layer(self, picker, batch=None) -> np.ndarray:
        """The overlay's mask as the browser draws it from a batch, ``dh x dw x 4 uint8``:
        its ``fillRects`` (whole pixels, in the last fill style)."""
        dw, dh = picker.display_size
        out = np.zeros((dh, dw, 4), np.uint8)
        fill = None
        for name, args, bufs in self.on(picker.layers["overlay"], batch):
            if name == "set:fill_style":
                fill = args[0]
            elif name == "fillRects":
                r, g, b, a = (float(v) for v in fill.removeprefix("rgba(")[:-1].split(","))
                colour = [int(r), int(g), int(b), round(a * 255)]
                arrays = [
                    np.frombuffer(bufs[m["idx"]], m["dtype"]).reshape(m["shape"])
                    if isinstance(m, dict)
                    else m
                    for m in args
                ]
                xs, ys, ws, hs = np.broadcast_arrays(*arrays)
                for x, y, w, h in zip(xs, ys, ws, hs, strict=True):
                    out[y : y + h, x : x + w] = colour
        return out

    def image(self, layer, batch=None):
        """``(pixels, x, y)`` of the last ``putImageData`` on ``layer`` in a batch (decoded:
        a JPEG, so only approximately)."""
        found = None
        for name, args, bufs in self.on(layer, batch):
            if name == "putImageData":
                im = Image.open(io.BytesIO(bufs[0]))
                found = (np.asarray(im.convert("RGB")), args[0], args[1], bufs[0])
            elif name == "clear":
                found = None
        if found is None:
            raise AssertionError("no putImageData on this layer in the batch")
        return found


@pytest.fixture
def drawn(monkeypatch):
    record = Drawn()
    monkeypatch.setattr(ipc._CANVAS_MANAGER, "_send_custom", record.record)
    return record


@pytest.fixture(params=["tiny", "tiny-sam", "tiny-slimsam", "tiny-sam-hq", "tiny-sam2"])
def make_picker(request, _private_cache):
    """Pickers over each backend's tiny model: the picker only talks to the interface."""
    model = load_or_skip(request.param)

    def make(image, **kwargs):
        return MaskPicker(ClickSegmenter(model, image), **kwargs)

    return make


def mouse(picker, kind, css_x, css_y, *, button=0, shift=False, rect=None):
    """Deliver one ipyevents mouse event, as its front end would send it."""
    rect_w, rect_h = rect or picker.display_size
    picker.events._handle_custom_msg(
        {
            "event": kind,
            "type": kind,
            "button": button,
            "shiftKey": shift,
            "relativeX": css_x,
            "relativeY": css_y,
            "boundingRectWidth": rect_w,
            "boundingRectHeight": rect_h,
        },
        [],
    )


GREEN = "rgba(0, 255, 0, 1.000000)"
RED = "rgba(255, 0, 0, 1.000000)"


def test_left_click_on_a_scaled_image_lands_on_image_pixels(make_picker, drawn):
    picker = make_picker(smooth_image(900, 600))  # wider than the default 768 px
    assert picker.display_size == (768, 512)
    assert picker.canvas.width == 768 and picker.canvas.height == 512
    assert [layer.width for layer in picker.layers.values()] == [768] * 2
    # The picture went out once, when the picker was made (JPEG: compare 8x8 block means).
    (built,) = [b for b in drawn.batches if drawn.on(picker.layers["picture"], b)]
    picture, px, py, _ = drawn.image(picker.layers["picture"], built)
    assert (px, py) == (0, 0) and picture.shape == (512, 768, 3)

    def blocks(a):
        return a.astype(float).reshape(64, 8, 96, 8, 3).mean(axis=(1, 3))

    assert np.abs(blocks(picture) - blocks(picker.display_image)).mean() < 3
    empty = rendered(picker).copy()
    np.testing.assert_array_equal(empty, picker.display_image)
    sent_before = len(drawn.batches)

    mouse(picker, "mousedown", 384, 256)
    mouse(picker, "mouseup", 384, 256)

    # CSS pixel 384 of 768 -> image pixel floor(384.5 * 900 / 768) = 450 (and 300 in y).
    assert picker.points == [(450.0, 300.0)] and picker.labels == [1]
    seg = picker.segmenter
    assert picker.mask is not None and picker.mask.shape == (600, 900)
    np.testing.assert_array_equal(picker.mask, seg.mask)
    assert picker.mask.any(), "the tiny SAM gave an empty mask for this click"

    # The mask layer is the mask at display size, tinted, its outline opaque; the picture
    # under it is unchanged and what the canvas shows is the two composed.
    small = np.asarray(Image.fromarray(picker.mask).resize((768, 512), Image.NEAREST))
    layer = mask_rgba(picker)
    np.testing.assert_array_equal(layer[..., 3] > 0, small)
    assert set(np.unique(layer[..., 3])) <= {0, widget.MASK_ALPHA, 255}
    assert (layer[small][:, :3] == widget.MASK_COLOR).all() and not layer[~small].any()
    np.testing.assert_array_equal(rendered(picker), expected_overlay(empty, small))
    changed = (rendered(picker) != empty).any(axis=2)
    assert changed[small].mean() > 0.9 and changed[~small].mean() < 0.01

    # One batch for the click: the overlay layer, the mask (its rows' runs as rectangles)
    # under the markers; the picture is not sent again. Drawn, it is exactly the mask layer.
    assert len(drawn.batches) == sent_before + 1
    assert drawn.on(picker.layers["picture"]) == []
    assert drawn.names(picker.layers["overlay"])[:3] == ["clear", "set:fill_style", "fillRects"]
    np.testing.assert_array_equal(drawn.mask_layer(picker), layer)
    ((x, y, colour),) = drawn.markers(picker)
    assert colour == GREEN
    assert x == pytest.approx(450.5 * 768 / 900) and y == pytest.approx(300.5 * 512 / 600)
    assert "1 point (1 include, 0 exclude)" in picker.status.value
    assert f"mask {100 * picker.mask.mean():.1f}%" in picker.status.value
    assert "ms" in picker.status.value and picker.last_latency_s > 0


def test_mask_layer_marks_inside_and_outline():
    rng = np.random.default_rng(1)
    mask = np.zeros((576, 768), bool)
    yy, xx = np.mgrid[0:576, 0:768]
    mask[(xx - 300) ** 2 + (yy - 260) ** 2 < 150**2] = True
    mask[rng.random(mask.shape) < 0.02] = True  # specks, as random-weight masks have
    index, x, y = widget.mask_layer(mask)
    full = np.zeros(mask.shape, np.uint8)
    full[y : y + index.shape[0], x : x + index.shape[1]] = index
    np.testing.assert_array_equal(full > 0, mask)
    eroded = cv2.erode(mask.astype(np.uint8), np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8))
    np.testing.assert_array_equal(full == 2, mask & (eroded == 0))
    assert widget.mask_layer(np.zeros((4, 4), bool)) is None


def test_layer_runs_cover_exactly_the_pixels():
    rng = np.random.default_rng(3)
    index = rng.integers(0, 3, (37, 53)).astype(np.uint8)
    index[5] = 1  # a full row
    index[6] = 0
    index[7, -3:] = 2  # a run at a row's end, then one at the next row's start
    index[8, :2] = 2
    tint, outline = widget.layer_runs(index)
    again = np.zeros_like(index)
    for runs, value in ((tint, 1), (outline, 2)):
        assert runs.dtype == np.int32 and runs.shape[1] == 3 and (runs[:, 2] > 0).all()
        for x, y, w in runs:
            assert not again[y, x : x + w].any()  # no overlaps
            again[y, x : x + w] = value
    np.testing.assert_array_equal(again, index)
    assert [r.tolist() for r in tint if r[1] == 5] == [[0, 5, 53]]
    # maximal runs: a run's neighbours on its row hold other values
    for runs, value in ((tint, 1), (outline, 2)):
        for x, y, w in runs:
            assert x == 0 or index[y, x - 1] != value
            assert x + w == 53 or index[y, x + w] != value
    empty = widget.layer_runs(np.zeros((4, 4), np.uint8))
    assert [r.shape for r in empty] == [(0, 3), (0, 3)]


def test_a_speckled_mask_is_drawn_exactly_and_again_for_a_new_view(make_picker, drawn):
    """Random weights answer with specks (thousands of runs): still rectangles, exactly the
    mask layer, sent again with the picture when a view reports client_ready."""
    picker = make_picker(noise_image(300, 200))
    picker.click(150, 100)
    tint, outline = widget.layer_runs(widget.mask_layer(picker.mask)[0])
    assert len(tint) + len(outline) > 100, "not a speckled mask"
    np.testing.assert_array_equal(drawn.mask_layer(picker), mask_rgba(picker))
    before = len(drawn.batches)
    picker.canvas._handle_custom_msg({"event": "client_ready"}, [])
    assert len(drawn.batches) == before + 1
    drawn.image(picker.layers["picture"])
    np.testing.assert_array_equal(drawn.mask_layer(picker), mask_rgba(picker))
    picker.close()
    assert all(layer.comm is None for layer in picker.layers.values())  # closed with it


def test_the_widget_uses_public_names_of_its_widget_libraries():
    """ipycanvas, ipyevents and ipywidgets through their public names only (issue 25)."""
    tree = ast.parse(Path(widget.__file__).read_text())
    libraries = ("ipycanvas", "ipyevents", "ipywidgets")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in libraries:
            assert node.module in libraries, node.module  # no private submodules
            assert not any(alias.name.startswith("_") for alias in node.names)
        if isinstance(node, ast.Attribute):
            private = ("_canvas_manager", "_send_custom", "send_draw_command", "_handle_custom_msg")
            assert node.attr not in private, node.attr


def test_css_shrunk_canvas_maps_with_the_bounding_rect(make_picker):
    picker = make_picker(noise_image(900, 600))
    # The browser shows the 768 px canvas 384 CSS px wide: 1 CSS px = 900 / 384 image px.
    mouse(picker, "mousedown", 192, 128, rect=(384, 256))
    ((x, y),) = picker.points
    assert abs(x - 450) <= 900 / 384 and abs(y - 300) <= 600 / 256
    assert (x, y) == (int(192.5 * 900 / 384), int(128.5 * 600 / 256))


def test_right_click_and_shift_click_exclude(make_picker, drawn):
    picker = make_picker(noise_image(300, 200))
    mouse(picker, "mousedown", 100, 50)  # include
    # A real right click: mousedown(button 2), mouseup(button 2), contextmenu.
    mouse(picker, "mousedown", 20, 30, button=2)
    mouse(picker, "mouseup", 20, 30, button=2)
    mouse(picker, "contextmenu", 20, 30, button=2)
    mouse(picker, "mousedown", 200, 150, shift=True)
    assert picker.points == [(100.0, 50.0), (20.0, 30.0), (200.0, 150.0)]
    assert picker.labels == [1, 0, 0]
    assert [c for _, _, c in drawn.markers(picker)] == [GREEN, RED, RED]
    assert "3 points (1 include, 2 exclude)" in picker.status.value

    picker.mode = "exclude"  # the toggle: a plain left click now excludes
    picker.click(250, 20)
    assert picker.labels[-1] == 0 and picker.points[-1] == (250.0, 20.0)
    with pytest.raises(ValueError, match="mode"):
        picker.mode = "lasso"


def test_ipycanvas_mouse_down_is_not_a_second_click_source(make_picker):
    picker = make_picker(noise_image(300, 200))
    # ipycanvas' own event for the same click must not add a point (no double-add).
    picker.canvas._handle_custom_msg({"event": "mouse_down", "x": 100, "y": 50}, [])
    assert picker.points == []
    mouse(picker, "mousedown", 100, 50)
    picker.canvas._handle_custom_msg({"event": "mouse_down", "x": 100, "y": 50}, [])
    assert picker.points == [(100.0, 50.0)]


def test_undo_redo_reset_buttons(make_picker, drawn):
    picker = make_picker(noise_image(300, 200))
    assert picker.undo_button.disabled and picker.redo_button.disabled
    assert picker.reset_button.disabled
    picker.click(100, 50)
    picker.click(200, 150, button=2)
    mask_two = picker.mask.copy()
    assert not picker.undo_button.disabled and picker.redo_button.disabled

    picker.undo_button.click()
    assert picker.points == [(100.0, 50.0)] and picker.labels == [1]
    assert len(drawn.markers(picker)) == 1
    assert not picker.redo_button.disabled

    picker.redo_button.click()
    assert picker.points == [(100.0, 50.0), (200.0, 150.0)] and picker.labels == [1, 0]
    np.testing.assert_array_equal(picker.mask, mask_two)
    assert len(drawn.markers(picker)) == 2

    picker.reset_button.click()
    assert picker.points == [] and picker.box is None and not picker.mask.any()
    assert drawn.markers(picker) == []
    overlay_names = drawn.names(picker.layers["overlay"])
    assert not {"drawImage", "fillRects", "putImageData"} & set(overlay_names)  # no mask drawn
    assert not mask_rgba(picker).any()
    np.testing.assert_array_equal(rendered(picker), picker.display_image)
    picker.undo_button.click()  # reset is undoable too
    assert len(picker.points) == 2


def test_candidate_chooser_shows_scores_and_chooses(make_picker, drawn):
    picker = make_picker(noise_image(300, 200))
    picker.click(150, 100)  # one point: SAM gives 3 candidates
    seg = picker.segmenter
    assert len(seg.candidates) == 3
    chooser = picker.candidates_buttons
    assert [label for label, _ in chooser.options] == [
        f"{i + 1}: {c.score:.2f}" for i, c in enumerate(seg.candidates)
    ]
    assert chooser.value == seg.chosen
    assert chooser.layout.display == "flex" and not chooser.disabled

    other = next(i for i in (2, 1) if i != seg.chosen)  # not 0: new options select the first
    before = len(drawn.batches)
    chooser.value = other
    assert seg.chosen == other
    np.testing.assert_array_equal(picker.mask, seg.candidates[other].mask)
    assert len(drawn.batches) == before + 1  # redrawn once
    picker.undo_button.click()  # the choice is undoable and the chooser follows
    assert chooser.value == seg.chosen != other
    picker.redo_button.click()
    assert chooser.value == seg.chosen == other

    picker.click(60, 60)  # two points: one candidate, nothing to choose
    assert len(chooser.options) == 1 and chooser.disabled
    # Back to three options: the chooser shows the choice made, and choosing nothing by itself.
    picker.undo_button.click()
    assert len(chooser.options) == 3 and chooser.value == seg.chosen == other
    assert [a["op"] for a in seg.to_dict()["actions"]] == ["point", "choose"]
    picker.reset_button.click()
    assert chooser.options == () and chooser.layout.display == "none"


def test_box_mode_drag_and_two_clicks(make_picker, drawn):
    picker = make_picker(noise_image(900, 600))
    picker.mode = "box"
    picker.drag(100, 80, 500, 400)
    assert picker.box == (100.0, 80.0, 500.0, 400.0) and picker.points == []
    s = 768 / 900
    assert drawn.rects(picker) == [[pytest.approx(v) for v in (100 * s, 80 * s, 400 * s, 320 * s)]]
    assert "box" in picker.status.value and not picker.clear_box_button.disabled

    # Two clicks: the first leaves a pending corner (a cross), the second makes the box.
    markers = picker.layers["overlay"]
    picker.click(700, 500)
    assert picker.box == (100.0, 80.0, 500.0, 400.0)
    assert drawn.names(markers).count("strokeLine") == 2
    assert drawn.mask_layer(picker).any()  # a pending corner: the mask is kept
    picker.click(300, 100)
    assert picker.box == (300.0, 100.0, 700.0, 500.0)
    assert "strokeLine" not in drawn.names(markers)

    # A right click in box mode is still an exclude point; the mode stays "box".
    picker.click(400, 300, button=2)
    assert picker.labels == [0] and picker.box is not None

    picker.clear_box_button.click()
    assert picker.box is None and picker.clear_box_button.disabled
    assert "strokeRect" not in drawn.names(markers)

    # A second corner in the same row (or within DRAG_THRESHOLD display px) cannot make a
    # box: the first corner waits for one that can.
    picker.click(100, 100)
    picker.click(300, 100)
    picker.click(300, 103)  # 3 image px = 2.56 display px
    assert picker.box is None and "opposite corner" in picker.status.value
    assert drawn.names(markers).count("strokeLine") == 2
    picker.click(300, 200)
    assert picker.box == (100.0, 100.0, 300.0, 200.0)


@pytest.mark.parametrize(
    ("size", "width", "display"),
    [
        ((300, 200), None, (300, 200)),
        ((300, 200), 150, (150, 100)),
        ((2000, 1000), None, (768, 384)),
    ],
)
def test_display_scaling_and_click_roundtrip(tiny_sam, size, width, display):
    picker = MaskPicker(ClickSegmenter(tiny_sam, noise_image(*size)), width=width)
    assert picker.display_size == display
    assert rendered(picker).shape == (display[1], display[0], 3)
    for x, y in [(0, 0), (size[0] - 1, size[1] - 1), (size[0] // 3, size[1] // 2)]:
        picker.click(x, y, button=2)  # exclude points: cheap and order-independent
        assert picker.points[-1] == (float(x), float(y))


def test_replay_from_prompts_renders_the_state(tiny_sam, subject_image, drawn):
    points = [[150, 100, 1], [40, 40, 0]]
    box = [90, 40, 210, 160]
    picker = MaskPicker(
        ClickSegmenter.from_prompts(tiny_sam, subject_image, points=points, box=box)
    )
    reference = ClickSegmenter.from_prompts(tiny_sam, subject_image, points=points, box=box)
    assert picker.points == [(150.0, 100.0), (40.0, 40.0)] and picker.labels == [1, 0]
    assert picker.box == (90.0, 40.0, 210.0, 160.0)
    np.testing.assert_array_equal(picker.mask, reference.mask)
    # Drawn at once: picture, mask layer, box, both markers (display = image size here).
    picture, _, _, _ = drawn.image(picker.layers["picture"])
    assert picture.shape == (200, 300, 3)
    assert drawn.markers(picker) == [(150.5, 100.5, GREEN), (40.5, 40.5, RED)]
    assert drawn.rects(picker) == [[90, 40, 120, 120]]
    np.testing.assert_array_equal(
        rendered(picker), expected_overlay(np.asarray(subject_image), picker.mask)
    )
    # masks.overlay (the saved overlay.png) tints the same: they differ only on the outline.
    reference_overlay = np.asarray(masks.overlay(subject_image, picker.mask)).astype(int)
    differ = np.abs(rendered(picker).astype(int) - reference_overlay).max(axis=2) > 1
    assert differ.mean() < 0.02

    # A front end that attaches later asks for every layer again.
    before = len(drawn.batches)
    picker.canvas._handle_custom_msg({"event": "client_ready"}, [])
    assert len(drawn.batches) == before + 1 and len(drawn.markers(picker)) == 2
    drawn.image(picker.layers["picture"])
    np.testing.assert_array_equal(drawn.mask_layer(picker), mask_rgba(picker))

    # Passing a segmenter built from prompts is the same path.
    again = MaskPicker(reference)
    assert again.points == picker.points
    np.testing.assert_array_equal(rendered(again), rendered(picker))


class BoxesDetector:
    """A detector with fixed boxes (the tiny Grounding DINO has random weights)."""

    source = "fixed"

    def __init__(self, boxes, scores):
        self.boxes, self.scores = boxes, scores

    def __call__(self, image, text, box_threshold, text_threshold):
        return self.boxes, [text] * len(self.boxes), self.scores


def test_starts_from_a_text_prompt_draws_its_boxes_and_refines(tiny_sam, subject_image, drawn):
    boxes = [(95.0, 45.0, 205.0, 155.0), (10.0, 10.0, 60.0, 50.0)]
    detector = BoxesDetector(boxes, [0.9, 0.5])
    seg = ClickSegmenter.from_prompts(tiny_sam, subject_image, text="the disc", detector=detector)
    picker = MaskPicker(seg)
    assert seg.text == "the disc" and seg.detections == boxes
    assert picker.box == boxes[0]  # the best box is the box prompt
    assert picker.mask.any()

    # Both detections dashed, then the box prompt solid on top.
    batch = drawn.on(picker.layers["overlay"])
    names = [n for n, _, _ in batch]
    dash_on = names.index("setLineDash")
    assert batch[dash_on][1] == [[6, 4]]
    rects = [(i, a) for i, (n, a, _) in enumerate(batch) if n == "strokeRect"]
    assert [a for _, a in rects] == [[95, 45, 110, 110], [10, 10, 50, 40], [95, 45, 110, 110]]
    dash_off = names.index("setLineDash", dash_on + 1)
    assert batch[dash_off][1] == [[]]
    assert rects[0][0] > dash_on and rects[1][0] < dash_off < rects[2][0]
    assert "text &#x27;the disc&#x27; (2 boxes found)" in picker.status.value

    # A click refines the text prompt's box; the detections and the text stay.
    picker.click(20, 20, button=2)
    assert picker.labels == [0] and seg.text == "the disc" and seg.detections == boxes
    assert len(drawn.rects(picker)) == 3

    # The record keeps the text; a replay without the detector gives the same mask.
    record = seg.to_dict()
    assert [a["op"] for a in record["actions"]] == ["text", "point"]
    assert record["actions"][0]["text"] == "the disc"
    again = MaskPicker(ClickSegmenter.from_dict(tiny_sam, subject_image, record))
    np.testing.assert_array_equal(again.mask, picker.mask)
    assert again.segmenter.detections == boxes

    # Replacing the box drops the text prompt, and undo brings it back.
    picker.mode = "box"
    picker.drag(100, 50, 200, 150)
    assert picker.box == (100.0, 50.0, 200.0, 150.0)
    markers = picker.layers["overlay"]
    assert seg.text is None and seg.detections == [] and "setLineDash" not in drawn.names(markers)
    picker.undo_button.click()
    assert seg.text == "the disc" and len(drawn.rects(picker)) == 3


def test_the_chooser_follows_a_choice_made_before(tiny_sam, subject_image):
    """New options select their first one (ipywidgets 7 even from none): that is no choice."""
    seg = ClickSegmenter.from_prompts(tiny_sam, subject_image, points=[[150, 100, 1]], chosen=2)
    picker = MaskPicker(seg)
    assert picker.segmenter.chosen == picker.candidates_buttons.value == 2


def test_text_prompt_that_finds_nothing_is_a_clear_error(tiny_sam, subject_image):
    with pytest.raises(ValueError, match="found nothing"):
        ClickSegmenter.from_prompts(
            tiny_sam, subject_image, text="a unicorn", detector=BoxesDetector([], [])
        )


def test_on_change_is_called_after_each_change(make_picker):
    picker = make_picker(noise_image(300, 200))
    seen = []
    picker.on_change(lambda p: seen.append((list(p.points), p.box)))
    picker.click(100, 50)
    picker.mode = "box"
    picker.click(10, 10)  # first corner only: nothing changed yet
    picker.click(200, 150)
    picker.undo_button.click()
    assert seen == [
        ([(100.0, 50.0)], None),
        ([(100.0, 50.0)], (10.0, 10.0, 200.0, 150.0)),
        ([(100.0, 50.0)], None),
    ]


def test_colab_custom_widget_manager_enabled_once(monkeypatch, make_picker):
    calls = []
    output = types.SimpleNamespace(enable_custom_widget_manager=lambda: calls.append(1))
    colab = types.ModuleType("google.colab")
    colab.output = output
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setattr(widget, "_colab_widgets_enabled", False)
    make_picker(noise_image(300, 200))
    make_picker(noise_image(300, 200))
    assert calls == [1]


def test_colab_not_touched_outside_colab(monkeypatch, make_picker):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(widget, "_colab_widgets_enabled", False)
    make_picker(noise_image(300, 200))
    assert widget._colab_widgets_enabled is False


def test_bad_arguments_say_what_to_do(tiny_sam, make_picker):
    with pytest.raises(ValueError, match="ClickSegmenter"):
        MaskPicker(tiny_sam)
    with pytest.raises(ValueError, match="width"):
        make_picker(noise_image(300, 200), width=0)
    picker = make_picker(noise_image(300, 200))
    with pytest.raises(ValueError, match="outside"):
        picker.click(300, 10)


class Counting:
    """A backend that counts (and can slow down) the predictions of the one it wraps."""

    def __init__(self, model, delay_s: float = 0.0):
        self.inner = as_segmenter(model)
        self.backend = self.inner.backend
        self.calls = 0
        self.delay_s = delay_s

    def embed(self, image):
        return self.inner.embed(image)

    def predict(self, embedding, **prompt):
        self.calls += 1
        time.sleep(self.delay_s)
        return self.inner.predict(embedding, **prompt)

    def predict_boxes(self, embedding, boxes, *, batch=16):
        return self.inner.predict_boxes(embedding, boxes, batch=batch)

    def info(self):
        return self.inner.info()


@pytest.fixture
def shell(monkeypatch):
    """An IPython shell's event hooks (what a kernel has), without a kernel."""
    stub = types.SimpleNamespace(events=EventManager(None, available_events))
    monkeypatch.setattr(IPython, "get_ipython", lambda: stub)
    return stub.events


def run_cell(events, seconds: float) -> None:
    """What a kernel does around a cell that keeps it busy for ``seconds``."""
    events.trigger("pre_run_cell", types.SimpleNamespace(raw_cell="time.sleep(...)"))
    time.sleep(seconds)  # the mouse events wait in the kernel's queue meanwhile
    events.trigger("post_run_cell", types.SimpleNamespace(success=True))


def test_clicks_queued_behind_a_busy_cell_are_computed_once(tiny_sam, shell, drawn):
    image = noise_image(300, 200)
    backend = Counting(tiny_sam)
    picker = MaskPicker(ClickSegmenter(backend, image))
    picker.click(150, 100)
    assert backend.calls == 1
    statuses = []
    picker.status.observe(lambda change: statuses.append(change["new"]), "value")

    async def kernel():
        shell.trigger("pre_run_cell", None)
        assert "kernel busy running a cell" in picker.status.value
        time.sleep(widget.BUSY_S + 0.02)
        shell.trigger("post_run_cell", None)
        assert "kernel busy" not in picker.status.value
        # The queue is read back to back: three clicks (one of them a right click).
        for x, y, button in [(20, 30, 0), (200, 50, 2), (250, 150, 0)]:
            mouse(picker, "mousedown", x, y, button=button)
            mouse(picker, "mouseup", x, y, button=button)
        assert backend.calls == 1 and picker.points == [(150.0, 100.0)]
        assert picker.queued == [[20, 30, 1], [200, 50, 0], [250, 150, 1]]
        # Their markers are shown at once, each drawn on top of the overlay.
        assert [len(drawn.markers(picker, b)) for b in drawn.batches[-3:]] == [1, 1, 1]
        assert "3 clicks made while the kernel was busy" in picker.status.value
        await asyncio.sleep(3 * widget.QUEUE_WINDOW_S)
        assert picker.queued == [] and backend.calls == 2  # SAM ran once for the three
        # Later, on an idle kernel, a click is computed at once, inside the event loop too.
        await asyncio.sleep(3 * widget.QUEUE_WINDOW_S)
        mouse(picker, "mousedown", 100, 20)
        assert backend.calls == 3 and len(picker.points) == 5

    asyncio.run(kernel())
    assert picker.points == [(150.0, 100.0), (20.0, 30.0), (200.0, 50.0), (250.0, 150.0)] + [
        (100.0, 20.0)
    ]
    assert picker.labels == [1, 1, 0, 1, 1]
    assert any("SAM ran once for all of them" in s for s in statuses)
    record = picker.segmenter.to_dict()
    assert [a["op"] for a in record["actions"]] == ["point", "points", "point"]
    assert record["actions"][1]["points"] == [[20.0, 30.0, 1], [200.0, 50.0, 0], [250.0, 150.0, 1]]
    replay = ClickSegmenter.from_dict(tiny_sam, image, record)
    np.testing.assert_array_equal(replay.mask, picker.mask)
    picker.undo_button.click()  # the batch is one undo step
    assert picker.points == [(150.0, 100.0), (20.0, 30.0), (200.0, 50.0), (250.0, 150.0)]
    picker.undo_button.click()
    assert picker.points == [(150.0, 100.0)]


def test_a_button_or_a_new_cell_computes_collected_clicks_first(tiny_sam, shell):
    backend = Counting(tiny_sam)
    picker = MaskPicker(ClickSegmenter(backend, noise_image(300, 200)))

    async def kernel():
        run_cell(shell, widget.BUSY_S + 0.02)
        mouse(picker, "mousedown", 20, 30)
        mouse(picker, "mousedown", 40, 50)
        assert len(picker.queued) == 2
        picker.undo_button.click()  # the clicks came first: computed, then undone
        assert picker.queued == [] and picker.points == [] and picker.segmenter.can_redo
        run_cell(shell, widget.BUSY_S + 0.02)
        mouse(picker, "mousedown", 60, 70)
        shell.trigger("pre_run_cell", None)  # a cell starts before the window closed
        assert picker.points == [(60.0, 70.0)] and picker.queued == []
        shell.trigger("post_run_cell", None)

    asyncio.run(kernel())
    assert backend.calls == 2


def test_a_slow_prediction_shows_the_marker_first_and_collects_what_queued(tiny_sam, drawn):
    backend = Counting(tiny_sam, delay_s=widget.SLOW_S + 0.01)
    picker = MaskPicker(ClickSegmenter(backend, noise_image(300, 200)))
    picker.click(150, 100)  # slow: the next click knows it will be slow
    statuses = []
    picker.status.observe(lambda change: statuses.append(change["new"]), "value")
    before = len(drawn.batches)

    async def kernel():
        mouse(picker, "mousedown", 20, 30)
        # Two batches: first the new marker alone, drawn on top, then the whole overlay.
        early, late = drawn.batches[before:]
        overlay = picker.layers["overlay"]
        assert drawn.markers(picker, early) == [(20.5, 30.5, GREEN)]
        assert set(drawn.names(overlay, early)) == {"set:fill_style", "fillCircle"}
        assert drawn.names(overlay, late)[0] == "clear"
        np.testing.assert_array_equal(drawn.mask_layer(picker, late), mask_rgba(picker))
        assert len(drawn.markers(picker, late)) == 2
        assert "computing the mask" in statuses[0] and "2 points" not in statuses[0]
        # Clicks made during that slow prediction are read right after it: collected.
        mouse(picker, "mousedown", 200, 50, button=2)
        mouse(picker, "mousedown", 250, 150)
        assert len(picker.queued) == 2 and backend.calls == 2
        await asyncio.sleep(3 * widget.QUEUE_WINDOW_S)
        assert picker.queued == [] and backend.calls == 3

    asyncio.run(kernel())
    assert picker.labels == [1, 1, 0, 1]


def test_hooks_follow_the_picker_and_leave_with_close(tiny_sam, shell):
    picker = MaskPicker(ClickSegmenter(tiny_sam, noise_image(300, 200)))
    assert len(shell.callbacks["pre_run_cell"]) == 1
    assert len(shell.callbacks["post_run_cell"]) == 1
    run_cell(shell, 0)  # a quick cell outside an event loop: nothing is collected
    mouse(picker, "mousedown", 20, 30)
    assert picker.points == [(20.0, 30.0)] and "busy" not in picker.status.value
    picker.close()
    assert shell.callbacks["pre_run_cell"] == [] and shell.callbacks["post_run_cell"] == []


class Failing(Counting):
    """A backend whose predictions fail (as a GPU out of memory would)."""

    def predict(self, embedding, **prompt):
        raise RuntimeError("out of memory")


def test_a_failed_prediction_is_shown_and_raised(tiny_sam):
    picker = MaskPicker(ClickSegmenter(Failing(tiny_sam), noise_image(300, 200)))
    with pytest.raises(RuntimeError, match="out of memory"):
        picker.click(100, 50)
    assert "error: RuntimeError: out of memory" in picker.status.value
    assert picker.points == [] and picker.queued == [] and not picker.segmenter.can_undo
