"""``MaskPicker``: click on a picture to segment it with SAM, in a Jupyter / Colab notebook.

A thin view over a :class:`~sdsam_nb.segment.clicks.ClickSegmenter` (points, box, candidates,
undo and redo live there), on the public APIs of ipycanvas, ipyevents and ipywidgets: an
``ipyevents.Event`` on the box around the canvas gets the mouse (:data:`SURFACE_CSS`); a
``MultiCanvas`` of :data:`LAYERS` shows the picture, sent once, under an overlay redrawn in one
``hold_canvas()`` batch per change. While a cell keeps the kernel busy the status line says so,
and the clicks read back to back afterwards are predicted once (``ClickSegmenter.add_points``).
"""

from __future__ import annotations

import asyncio
import html
import math
import time
from collections.abc import Callable, Sequence

import cv2
import IPython
import ipywidgets as widgets
import numpy as np
from ipycanvas import MultiCanvas, hold_canvas
from ipyevents import Event
from PIL import Image

from .. import masks
from ..models import in_colab
from .clicks import ClickSegmenter

DEFAULT_WIDTH = 768  # display width in CSS pixels: min(image width, DEFAULT_WIDTH)
MODES = ("include", "exclude", "box")  # what a left click does
LAYERS = ("picture", "overlay")  # the canvas layers, bottom to top
MARKER_RADIUS = 6  # display pixels, plus a 2 px white rim
DRAG_THRESHOLD = 4  # box mode: a release this far (display px, in x and y) sets the 2nd corner
DETECTION_COLOR = (0, 200, 255)  # a text prompt's detections, dashed (the box: masks.BOX_COLOR)
MASK_COLOR = (30, 144, 255)  # the mask layer's tint (masks.overlay's default colour)
MASK_ALPHA = 115  # the tint's opacity, 0..255 (0.45, as masks.overlay); the outline is opaque
BUSY_S = 0.1  # a cell or prediction this long (s) may have queued clicks
QUEUE_WINDOW_S = 0.05  # collected clicks are predicted once none came for this long (s)
SLOW_S = 0.25  # after a prediction this slow (s), a click's marker is drawn before SAM runs
BUSY_NOTE = "kernel busy running a cell: clicks made now wait for it (then SAM runs once for all)"
# The canvas ignores the mouse (its views would send the kernel every move, read before each
# click); the box around it (MaskPicker.surface) gets it.
SURFACE_CSS = "<style>.sdsam-picker-surface canvas { pointer-events: none; }</style>"
EVENTS = ["mousedown", "mouseup", "contextmenu"]  # contextmenu: only to keep its menu away

_colab_widgets_enabled = False


def enable_colab_widgets() -> bool:
    """On Google Colab, turn on the custom widget manager that ipycanvas and ipyevents need
    (once per process). Returns True on Colab, False elsewhere."""
    global _colab_widgets_enabled
    if in_colab() and not _colab_widgets_enabled:
        from google.colab import output

        output.enable_custom_widget_manager()
        _colab_widgets_enabled = True
    return in_colab()


def _css(rgb: Sequence[int], alpha: int = 255) -> str:
    """CSS for ``rgb`` at opacity ``alpha`` / 255 (six decimals: exact in 8 bits)."""
    return "rgba({}, {}, {}, {:.6f})".format(*(int(c) for c in rgb), alpha / 255)


_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def mask_layer(mask: np.ndarray) -> tuple[np.ndarray, int, int] | None:
    """The mask layer of an ``HxW bool`` mask, ``None`` if it is empty, else ``(index, x, y)``:
    an ``h x w uint8`` crop of its bounding box (one pixel of margin) at pixel ``(x, y)``, 0
    outside the mask, 1 inside, 2 on its outline (mask pixels with a 4-neighbour outside)."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    y0, x0 = max(rows[0] - 1, 0), max(cols[0] - 1, 0)
    y1, x1 = min(rows[-1] + 2, mask.shape[0]), min(cols[-1] + 2, mask.shape[1])
    inside = np.ascontiguousarray(mask[y0:y1, x0:x1], dtype=np.uint8)
    return inside + (inside & (1 - cv2.erode(inside, _CROSS))), int(x0), int(y0)


def layer_runs(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows' runs of a layer's ``index`` (:func:`mask_layer`): ``(tint, outline)``, each
    ``n x 3 int32`` of ``(x, y, width)``, row by row."""
    h, w = index.shape
    padded = np.zeros((h, w + 1), np.uint8)  # a zero column: no run crosses into the next row
    padded[:, :w] = index
    flat = padded.ravel()
    starts = np.flatnonzero(np.diff(flat, prepend=np.uint8(0)))
    values = flat[starts]
    y, x = np.divmod(starts, w + 1)
    runs = np.stack([x, y, np.diff(starts, append=flat.size)], axis=1).astype(np.int32)
    return runs[values == 1], runs[values == 2]


def _from_segmenter(name: str, doc: str) -> property:
    return property(lambda self: getattr(self.segmenter, name), doc=doc)


class MaskPicker(widgets.VBox):
    """Interactive SAM mask picker: picture, mask overlay, point markers and controls.

    Args:
        segmenter: the state shown and edited (the points it holds are drawn at once).
        width: display width in CSS pixels, default ``min(image width, 768)``; the height
            keeps the aspect ratio. Points are always ``(x, y)`` in image pixels.

    Mouse: a left click adds a point in the current mode (include / exclude); in box mode a
    drag, or two clicks, give opposite corners of the box. A right click or shift + left click
    adds an exclude point in every mode.

    Attributes:
        segmenter: the :class:`~sdsam_nb.segment.clicks.ClickSegmenter`.
        canvas: the ``ipycanvas.MultiCanvas`` (CSS class ``sdsam-picker-canvas``); ``layers``
            maps :data:`LAYERS` to its canvases; ``surface``: the ``ipywidgets.Box`` around it
            that gets the mouse through ``events``, an ``ipyevents.Event``.
        mode_buttons, undo_button, redo_button, reset_button, clear_box_button,
        candidates_buttons, status: the controls (ipywidgets).
        image_size, display_size: ``(w, h)`` in pixels; ``display_image``: the picture at
            display size, ``dh x dw x 3 uint8``.
        last_latency_s: seconds the kernel spent on the last change (SAM and redraw).
        queued: clicks ``[x, y, label]`` collected behind a busy kernel, not predicted yet.
    """

    _hooks = _flush_handle = None  # IPython's events while followed; a pending flush()
    _parts: tuple = ()  # the widgets close() closes

    def __init__(self, segmenter: ClickSegmenter, *, width: int | None = None):
        if not isinstance(segmenter, ClickSegmenter):
            raise ValueError(
                f"segmenter must be a ClickSegmenter, not {type(segmenter).__name__}; "
                "build one with ClickSegmenter(predictor, image) or ClickSegmenter.from_prompts"
            )
        image = segmenter.image
        iw, ih = image.size
        width = min(iw, DEFAULT_WIDTH) if width is None else width
        if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 16:
            raise ValueError(f"width must be a whole number of pixels >= 16, got {width!r}")
        enable_colab_widgets()
        self.segmenter, self.image_size = segmenter, (iw, ih)
        self.display_size = dw, dh = int(width), max(1, round(ih * int(width) / iw))
        self._scale = dw / iw, dh / ih  # display pixels per image pixel
        resized = image.resize((dw, dh), Image.LANCZOS) if dw != iw else image
        self.display_image = np.asarray(resized)
        self._layer: tuple[np.ndarray, int, int] | None = None  # mask_layer() at display size
        self._area = 0.0  # the mask's share of the image, %
        self._anchor: tuple[int, int] | None = None  # a pending box corner, image pixels
        self._message = ""  # the status line's last part
        self._busy_since: float | None = None  # perf_counter() at the running cell's start
        self._collect_until = 0.0  # perf_counter() until which clicks are collected
        self._callbacks = widgets.CallbackDispatcher()
        self.last_latency_s: float | None = None
        self.queued: list[list] = []

        layout = {"width": "100%", "height": "auto", "margin": "0"}
        self.canvas = MultiCanvas(len(LAYERS), width=dw, height=dh, layout=layout)
        self.layers = {name: self.canvas[k] for k, name in enumerate(LAYERS)}
        self.canvas.add_class("sdsam-picker-canvas")
        self.canvas.on_client_ready(lambda: self._draw(picture=True))
        # Natural size, shrunk to fit a narrow cell; clicks map with the element's real size.
        layout = {"width": f"{dw}px", "max_width": "100%", "overflow": "hidden"}
        self.surface = widgets.Box([self.canvas], layout=dict(layout, align_items="flex-start"))
        self.surface.add_class("sdsam-picker-surface")
        css = widgets.HTML(SURFACE_CSS, layout={"display": "none"})
        self.events = Event(source=self.surface, watched_events=EVENTS, prevent_default_action=True)
        self.events.on_dom_event(self._on_dom_event)

        self.mode_buttons = widgets.ToggleButtons(
            options=MODES,
            tooltips=["include point", "exclude point", "box: drag, or click two corners"],
            style={"button_width": "80px"},
        )
        self.mode_buttons.observe(lambda _: self._show_anchor(None), "value")

        def button(action: Callable, description: str, tooltip: str, icon: str = ""):
            made = widgets.Button(description=description, tooltip=tooltip, icon=icon)
            made.layout.width = "80px" if icon else ""
            made.on_click(lambda _: self._act(action))
            return made

        self.undo_button = button(segmenter.undo, "undo", "undo", "undo")
        self.redo_button = button(segmenter.redo, "redo", "redo", "repeat")
        self.reset_button = button(segmenter.reset, "reset", "remove the points and box", "trash")
        self.clear_box_button = button(segmenter.clear_box, "clear box", "remove the box")
        self.candidates_buttons = widgets.ToggleButtons(
            options=[], description="mask", style={"button_width": "90px"}
        )
        self.candidates_buttons.observe(self._on_candidate, "value")
        self.status = widgets.HTML()
        self.status.add_class("sdsam-picker-status")
        buttons = (self.undo_button, self.redo_button, self.reset_button, self.clear_box_button)
        toolbar = widgets.HBox([self.mode_buttons, *buttons])
        super().__init__([toolbar, self.surface, self.candidates_buttons, self.status, css])
        self.add_class("sdsam-picker")
        self._parts = (self.events, self.canvas, *self.layers.values(), self.surface, css)
        # Follow the kernel's cells (if there is a shell) until close().
        self._hooks = getattr(IPython.get_ipython(), "events", None)
        if self._hooks is not None:
            self._hooks.register("pre_run_cell", self._on_cell_start)
            self._hooks.register("post_run_cell", self._on_cell_end)
        self._refresh(picture=True)
        self._update_status()

    def close(self) -> None:
        """Close the widget and its parts, and stop following the kernel's cells."""
        if self._hooks is not None:
            self._hooks.unregister("pre_run_cell", self._on_cell_start)
            self._hooks.unregister("post_run_cell", self._on_cell_end)
            self._hooks = None
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        for part in self._parts:
            part.close()
        super().close()

    # ------------------------------------------------------------------ state, read-only

    mask = _from_segmenter("mask", "The chosen mask, ``HxW bool`` at the image's size.")
    points = _from_segmenter("points", "Click points ``(x, y)`` in image pixels.")
    labels = _from_segmenter("labels", "One label per point: 1 include, 0 exclude.")
    box = _from_segmenter("box", "``(x0, y0, x1, y1)`` in image pixels, or ``None``.")

    @property
    def mode(self) -> str:
        """What a left click does: ``"include"``, ``"exclude"`` or ``"box"``."""
        return self.mode_buttons.value

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {value!r}")
        self.mode_buttons.value = value

    def on_change(self, callback: Callable[[MaskPicker], None], remove: bool = False) -> None:
        """Call ``callback(picker)`` after every change of points, box or chosen mask."""
        self._callbacks.register_callback(callback, remove=remove)

    # ------------------------------------------------------------------ input

    def click(self, x: float, y: float, button: int = 0, shift: bool = False) -> None:
        """Click at ``(x, y)`` in image pixels (``button`` 0 left or 2 right, ``shift`` held or
        not) through the handler ipyevents calls; computed before this returns."""
        self._mouse("mousedown", x, y, button, shift)
        self._mouse("mouseup", x, y, button, shift)
        self.flush()

    def drag(self, x0: float, y0: float, x1: float, y1: float) -> None:
        """Press the left button at ``(x0, y0)`` and release it at ``(x1, y1)`` (image px)."""
        self._mouse("mousedown", x0, y0)
        self._mouse("mouseup", x1, y1)

    def _mouse(self, kind: str, x: float, y: float, button: int = 0, shift: bool = False):
        """Hand the handler the event ipyevents sends for a mouse at image pixel ``(x, y)``."""
        (iw, ih), (dw, dh) = self.image_size, self.display_size
        if not (0 <= x < iw and 0 <= y < ih):
            raise ValueError(f"({x}, {y}) is outside the {iw}x{ih} image")
        event = {"event": kind, "button": int(button), "shiftKey": bool(shift)}
        event.update(relativeX=(x + 0.5) * dw / iw - 0.5, relativeY=(y + 0.5) * dh / ih - 0.5)
        self._on_dom_event(dict(event, boundingRectWidth=dw, boundingRectHeight=dh))

    def _on_dom_event(self, event: dict) -> None:
        """An ipyevents mouse event: a point, a box corner or nothing (``contextmenu`` is
        watched only so that its menu stays away)."""
        kind, button = event.get("event"), int(event.get("button", 0))
        if kind not in ("mousedown", "mouseup") or "relativeX" not in event:
            return
        # relativeX/Y: whole CSS pixels in the element (boundingRect) that shows the image
        (iw, ih), (dw, dh) = self.image_size, self.display_size
        x = math.floor((float(event["relativeX"]) + 0.5) * iw / (event["boundingRectWidth"] or dw))
        y = math.floor((float(event["relativeY"]) + 0.5) * ih / (event["boundingRectHeight"] or dh))
        x, y = min(max(x, 0), iw - 1), min(max(y, 0), ih - 1)
        exclude = button == 2 or (button == 0 and bool(event.get("shiftKey")))
        if button == 0 and not exclude and self.mode == "box":
            self._box_corner(kind, x, y)
        elif kind == "mousedown" and (button == 0 or exclude):
            self._add_click([x, y, int(not exclude and self.mode == "include")])

    def _box_corner(self, kind: str, x: int, y: int) -> None:
        """Box mode: a press sets the first corner (unless one is pending); a release at least
        :data:`DRAG_THRESHOLD` display pixels from it in x and in y sets the opposite one."""
        if kind == "mousedown" and self._anchor is None:
            self.flush()
            self._show_anchor((x, y), "box: drag, or click the opposite corner")
        elif kind == "mouseup" and self._anchor is not None:
            (ax, ay), (sx, sy) = self._anchor, self._scale
            if min(abs(x - ax) * sx, abs(y - ay) * sy) >= DRAG_THRESHOLD:
                self._act(self.segmenter.set_box, ax, ay, x, y)

    def _add_click(self, click: list) -> None:
        """Predict a click ``[x, y, label]`` at once, or, while the clicks that queued behind a
        busy kernel are being read, collect it and predict them all once they stop coming."""
        self.queued.append(click)
        loop, now = _running_loop(), time.perf_counter()
        if loop is None or (len(self.queued) == 1 and now >= self._collect_until):
            return self.flush()
        self._collect_until = now + QUEUE_WINDOW_S
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush_handle = loop.call_later(QUEUE_WINDOW_S, self.flush)
        n = len(self.queued)
        self._show_clicks([click], f"{n} click{'s' * (n != 1)} made while the kernel was busy…")

    def flush(self) -> None:
        """Compute the clicks in :attr:`queued` now, with one prediction for all of them."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._collect_until = 0.0
        queued, self.queued = self.queued, []
        if len(queued) == 1:
            ((x, y, label),) = queued
            self._act(self.segmenter.add_point, x, y, bool(label), markers=queued)
        elif queued:
            message = f"{len(queued)} queued clicks: SAM ran once for all of them"
            self._act(self.segmenter.add_points, queued, markers=queued, message=message)

    def _act(self, action: Callable, *args, markers: Sequence = (), message: str = "") -> None:
        """The one path of every change: compute the collected clicks first, run
        ``action(*args)`` (a segmenter method), redraw, notify, show ``message``. ``markers``:
        the clicks ``[x, y, label]`` it predicts, drawn first if SAM is expected to be slow."""
        start = time.perf_counter()
        self.flush()
        self._anchor = None
        last = self.segmenter.last_latency_s
        if markers and last is not None and last >= SLOW_S:
            self._show_clicks(markers, f"computing the mask (SAM took {last:.1f} s last time)…")
        try:
            action(*args)
        except Exception as exc:  # often run from the event loop: show it, then raise
            self._message = html.escape(f"error: {type(exc).__name__}: {exc}")
            self._update_status()
            raise
        self._message = message
        self._refresh()
        self.last_latency_s = time.perf_counter() - start
        self._update_status()
        self._check_busy(start)

    def _on_candidate(self, change) -> None:
        if change["new"] not in (None, self.segmenter.chosen):
            self._act(self.segmenter.choose, int(change["new"]))

    # ------------------------------------------------------------------ a busy kernel

    def _on_cell_start(self, info=None) -> None:
        """A cell starts: clicks made now wait in the kernel's queue (the status line says so)."""
        self.flush()
        self._busy_since = time.perf_counter()
        self._update_status()

    def _on_cell_end(self, result=None) -> None:
        """A cell is done: the clicks that queued while it ran are read next; collect them."""
        self._check_busy(self._busy_since or time.perf_counter())
        self._busy_since = None
        self._update_status()

    def _check_busy(self, since: float) -> None:
        """If the kernel was busy from ``since`` for :data:`BUSY_S` or longer, collect the
        clicks that arrive in the next ``2 * QUEUE_WINDOW_S`` (they queued meanwhile)."""
        now = time.perf_counter()
        if now - since >= BUSY_S and _running_loop() is not None:  # a loop to flush() later
            self._collect_until = now + 2 * QUEUE_WINDOW_S

    # ------------------------------------------------------------------ drawing

    def _refresh(self, picture: bool = False) -> None:
        """Recompute the mask layer, redraw, sync the candidates and notify."""
        mask = self.segmenter.mask
        self._area = 100.0 * np.count_nonzero(mask) / mask.size
        if self.display_size != self.image_size:  # nearest by pixel centres, as PIL's NEAREST
            mask = cv2.resize(
                mask.view(np.uint8), self.display_size, interpolation=cv2.INTER_NEAREST_EXACT
            ).view(bool)
        self._layer = mask_layer(mask)
        self._draw(picture=picture)
        self._sync_candidates()
        self._callbacks(self)

    def _to_display(self, x: float, y: float) -> tuple[float, float]:
        """Centre of image pixel ``(x, y)`` in display pixels."""
        return (x + 0.5) * self._scale[0], (y + 0.5) * self._scale[1]

    def _draw(self, picture: bool = False) -> None:
        """One batch: the picture if asked, then the overlay redrawn: the mask layer, the
        detections (dashed), the box, a pending corner and the markers."""
        seg, c, (sx, sy) = self.segmenter, self.layers["overlay"], self._scale

        def rect(x0, y0, x1, y1):
            c.stroke_rect(x0 * sx, y0 * sy, (x1 - x0) * sx, (y1 - y0) * sy)

        with hold_canvas():
            if picture:
                self.layers["picture"].put_image_data(self.display_image, 0, 0)
            c.clear()
            if self._layer is not None:
                index, x, y = self._layer
                for runs, alpha in zip(layer_runs(index), (MASK_ALPHA, 255), strict=True):
                    if len(runs):
                        c.fill_style = _css(MASK_COLOR, alpha)
                        c.fill_rects(runs[:, 0] + x, runs[:, 1] + y, runs[:, 2], 1)
            if seg.detections:  # dashed, under the box prompt they gave
                c.stroke_style, c.line_width = _css(DETECTION_COLOR), 1
                c.set_line_dash([6, 4])
                for box in seg.detections:
                    rect(*box)
                c.set_line_dash([])
            c.stroke_style, c.line_width = _css(masks.BOX_COLOR), 2
            if seg.box is not None:
                rect(*(float(v) for v in seg.box))
            if self._anchor is not None:
                ax, ay = self._to_display(*self._anchor)
                c.stroke_line(ax - 8, ay, ax + 8, ay)
                c.stroke_line(ax, ay - 8, ax, ay + 8)
            self._draw_markers([[*p, k] for p, k in zip(seg.points, seg.labels, strict=True)])

    def _draw_markers(self, clicks: list[list]) -> None:
        """A white disc and a coloured one per click ``[x, y, label]`` on the overlay (inside
        the caller's ``hold_canvas()``)."""
        c = self.layers["overlay"]
        for px, py, label in clicks:
            x, y = self._to_display(px, py)
            c.fill_style = "white"
            c.fill_circle(x, y, MARKER_RADIUS + 2)
            c.fill_style = _css(masks.POSITIVE_COLOR if label == 1 else masks.NEGATIVE_COLOR)
            c.fill_circle(x, y, MARKER_RADIUS)

    def _show_clicks(self, clicks: list[list], message: str) -> None:
        """Clicks not predicted yet: their markers on top of the overlay, and ``message``."""
        with hold_canvas():
            self._draw_markers(clicks)
        self._message = message
        self._update_status()

    def _show_anchor(self, anchor: tuple[int, int] | None, message: str = "") -> None:
        """A pending box corner (image pixels) or none: the overlay redrawn, and ``message``."""
        self._anchor, self._message = anchor, message
        self._draw()
        self._update_status()

    def _sync_candidates(self) -> None:
        scores, buttons = self.segmenter.scores, self.candidates_buttons
        options = [(f"{i + 1}: {score:.2f}", i) for i, score in enumerate(scores)]
        buttons.unobserve(self._on_candidate, "value")  # new options select the first one
        try:
            with buttons.hold_sync():  # one message for all of its changes
                if list(buttons.options) != options:
                    buttons.options = options
                    buttons.tooltips = [f"SAM's predicted IoU {score:.3f}" for score in scores]
                buttons.value = self.segmenter.chosen if scores else None
                buttons.disabled = len(options) < 2  # greyed out with one
        finally:
            buttons.observe(self._on_candidate, "value")
        buttons.layout.display = "flex" if options else "none"

    def _update_status(self) -> None:
        seg = self.segmenter
        self.undo_button.disabled, self.redo_button.disabled = not seg.can_undo, not seg.can_redo
        self.reset_button.disabled = not (seg.points or seg.box is not None)
        self.clear_box_button.disabled = seg.box is None
        labels = [int(v) for v in seg.labels]
        n, include = len(labels), labels.count(1)
        parts = [] if self._busy_since is None else [f"<b>{BUSY_NOTE}</b>"]
        parts.append(f"{n} point{'s' * (n != 1)} ({include} include, {n - include} exclude)")
        if seg.text is not None:
            n = len(seg.detections)
            parts.append(f"text {html.escape(repr(seg.text))} ({n} box{'es' * (n != 1)} found)")
        elif seg.box is not None:
            parts.append("box")
        parts.append(f"mask {self._area:.1f}% of the image")
        if self.last_latency_s is not None:
            sam = seg.last_latency_s
            sam = f" (SAM {1000 * sam:.0f} ms)" if sam is not None else ""
            parts.append(f"last click {1000 * self.last_latency_s:.0f} ms{sam}")
        if self._message:
            parts.append(f"<b>{self._message}</b>")
        self.status.value = " · ".join(parts)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio loop (the kernel's), or ``None`` (plain Python, tests)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
