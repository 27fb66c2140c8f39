"""``MaskPicker``: click on a picture to segment it with SAM, in a Jupyter / Colab notebook.

The widget is a thin view over a :class:`sdsam_nb.segment.clicks.ClickSegmenter`: every decision
(which points, which box, which candidate mask, undo and redo) lives in the segmenter; the
widget maps mouse events to its methods and draws its state.

How a click travels
-------------------
The canvas (``ipycanvas.Canvas``) only draws. Clicks come from **one** source, an
``ipyevents.Event`` watching ``mousedown``, ``mouseup`` and ``contextmenu`` on the canvas
with ``prevent_default_action=True`` (no browser or JupyterLab context menu on a right click):

1. the browser sends ``{"event": "mousedown", "button": 0|2, "shiftKey": ..., "relativeX":
   ..., "boundingRectWidth": ..., ...}`` (CSS pixels) to the kernel as a custom message;
2. :meth:`MaskPicker._on_dom_event` maps ``relativeX/Y`` to image pixels with the element's
   bounding rectangle (so a canvas shrunk by CSS still maps right, and so does an image that
   is shown smaller than it is), then calls ``segmenter.add_point`` / ``set_box``;
3. the widget redraws (one ``hold_canvas()`` batch) and calls the :meth:`on_change`
   callbacks.

ipycanvas' own ``on_mouse_down`` is deliberately *not* used: it reports only ``(x, y)`` — no
button, no modifier keys — and it also fires for a right click, so listening to both sources
would add every point twice (once as "include" from ipycanvas, once from ipyevents).
:meth:`MaskPicker.click` sends a synthetic event through the very same message handler; tests
and headless runs use it.

Drawing
-------
The picture with the translucent mask is computed in numpy (:func:`sdsam_nb.masks.overlay` at
display size, kept in :attr:`MaskPicker.rendered`) and sent with ``put_image_data``; the
include (green) / exclude (red) markers, the box, a text prompt's detections (dashed) and a
pending box corner are drawn on top as canvas shapes. ipycanvas does not replay drawings to a
view that appears later, so the widget draws again whenever a view reports ``client_ready``.
Headless, ``canvas.image_data`` stays ``None``: all state is in the segmenter and in numpy
arrays.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Callable, Sequence

import ipywidgets as widgets
import numpy as np
from ipycanvas import Canvas, hold_canvas
from ipyevents import Event
from PIL import Image

from .. import masks
from ..images import ImageLike
from ..models import in_colab
from .clicks import ClickSegmenter

DEFAULT_WIDTH = 768
"""Default display width in CSS pixels: ``min(image width, DEFAULT_WIDTH)``."""
MODES = ("include", "exclude", "box")
MARKER_RADIUS = 6
"""Radius of a point marker in display pixels (plus a 2 px white rim)."""
DRAG_THRESHOLD = 4
"""In box mode, a press and release at least this many display pixels apart make a box."""
DETECTION_COLOR = (0, 200, 255)
"""Colour of the dashed boxes a text prompt found (the box prompt itself is ``BOX_COLOR``)."""

_colab_widgets_enabled = False


def enable_colab_widgets() -> bool:
    """On Google Colab, turn on the custom widget manager (once per process).

    ipycanvas and ipyevents are third-party widgets, which Colab renders only after
    ``google.colab.output.enable_custom_widget_manager()``. Returns True if it is enabled
    (now or earlier), False outside Colab. :class:`MaskPicker` calls this itself.
    """
    global _colab_widgets_enabled
    if not in_colab():
        return False
    if not _colab_widgets_enabled:
        from google.colab import output

        output.enable_custom_widget_manager()
        _colab_widgets_enabled = True
    return True


def _rgb_css(rgb: Sequence[int]) -> str:
    return "rgb({}, {}, {})".format(*(int(c) for c in rgb))


class MaskPicker(widgets.VBox):
    """Interactive SAM mask picker: picture, mask overlay, point markers and controls.

    Args:
        segmenter: the state this widget shows and edits (it may already hold points, e.g.
            one built with ``ClickSegmenter.from_prompts``; they are drawn at once).
        width: display width of the picture in CSS pixels; default
            ``min(image width, 768)``. The height keeps the aspect ratio. Clicks are mapped
            back to image pixels, so points are always ``(x, y)`` in image pixels.

    Mouse:
        * left click: a point in the current mode (include / exclude); in box mode, a press
          and a release far apart (a drag), or two clicks, give opposite corners of the box;
        * right click or shift + left click: an exclude point, in every mode.

    Attributes:
        segmenter: the :class:`~sdsam_nb.segment.clicks.ClickSegmenter`.
        canvas: the ``ipycanvas.Canvas`` (CSS class ``sdsam-picker-canvas``).
        events: the ``ipyevents.Event`` that delivers the mouse events.
        mode_buttons, undo_button, redo_button, reset_button, clear_box_button,
        candidates_buttons, status: the controls (ordinary ipywidgets).
        rendered: ``dh x dw x 3 uint8`` picture + mask overlay last sent to the canvas.
        display_image: ``dh x dw x 3 uint8``, the picture at the canvas size, no overlay.
        display_size: ``(dw, dh)`` of the canvas in pixels.
        last_latency_s: seconds the last mouse event took in the kernel (SAM + redraw).
    """

    @property
    def display_image(self) -> np.ndarray:
        """The picture at the canvas size (``dh x dw x 3 uint8``), without the overlay."""
        return self._base

    def __init__(self, segmenter: ClickSegmenter, *, width: int | None = None):
        if not isinstance(segmenter, ClickSegmenter):
            raise ValueError(
                f"segmenter must be a ClickSegmenter, not {type(segmenter).__name__}; "
                "use MaskPicker.from_prompts(predictor, image) to build one"
            )
        enable_colab_widgets()
        self.segmenter = segmenter
        image = segmenter.image
        self.image_size = image.size
        iw, ih = image.size
        if width is None:
            width = min(iw, DEFAULT_WIDTH)
        if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 16:
            raise ValueError(f"width must be a whole number of pixels >= 16, got {width!r}")
        dw = int(width)
        dh = max(1, round(ih * dw / iw))
        self.display_size = (dw, dh)
        base = image if (dw, dh) == (iw, ih) else image.resize((dw, dh), Image.LANCZOS)
        self._base = np.asarray(base, dtype=np.uint8)
        self.rendered = self._base.copy()
        self.last_latency_s: float | None = None
        self._anchor: tuple[int, int] | None = None  # first box corner, image pixels
        self._swallow_mouseup = False
        self._syncing = False
        self._message = ""
        self._callbacks = widgets.CallbackDispatcher()

        self.canvas = Canvas(width=dw, height=dh)
        self.canvas.add_class("sdsam-picker-canvas")
        # Natural size (a VBox would stretch it to the cell's width), shrunk to fit a narrow
        # cell with its aspect kept; clicks are mapped with the element's real CSS size.
        self.canvas.layout.width = f"{dw}px"
        self.canvas.layout.max_width = "100%"
        self.canvas.layout.height = "auto"
        self.canvas.on_client_ready(self._draw)
        self.events = Event(
            source=self.canvas,
            watched_events=["mousedown", "mouseup", "contextmenu"],
            prevent_default_action=True,
        )
        self.events.on_dom_event(self._on_dom_event)

        self.mode_buttons = widgets.ToggleButtons(
            options=[("include", "include"), ("exclude", "exclude"), ("box", "box")],
            value="include",
            tooltips=[
                "left click adds an include point",
                "left click adds an exclude point",
                "drag, or click two opposite corners, to draw a box",
            ],
            style={"button_width": "80px"},
        )
        self.mode_buttons.observe(self._on_mode, "value")
        self.undo_button = widgets.Button(description="undo", icon="undo", tooltip="undo")
        self.redo_button = widgets.Button(description="redo", icon="repeat", tooltip="redo")
        self.reset_button = widgets.Button(
            description="reset", icon="trash", tooltip="remove every point and the box"
        )
        self.clear_box_button = widgets.Button(description="clear box", tooltip="remove the box")
        for button in (self.undo_button, self.redo_button, self.reset_button):
            button.layout.width = "80px"
        self.undo_button.on_click(lambda _: self._run(self.segmenter.undo))
        self.redo_button.on_click(lambda _: self._run(self.segmenter.redo))
        self.reset_button.on_click(lambda _: self._run(self.segmenter.reset))
        self.clear_box_button.on_click(lambda _: self._run(self.segmenter.clear_box))
        self.candidates_buttons = widgets.ToggleButtons(
            options=[], description="mask", style={"button_width": "90px"}
        )
        self.candidates_buttons.observe(self._on_candidate, "value")
        self.status = widgets.HTML()
        toolbar = widgets.HBox(
            [
                self.mode_buttons,
                self.undo_button,
                self.redo_button,
                self.reset_button,
                self.clear_box_button,
            ]
        )
        super().__init__([toolbar, self.canvas, self.candidates_buttons, self.status])
        self.add_class("sdsam-picker")
        self._refresh()

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_prompts(
        cls,
        predictor,
        image: ImageLike,
        points: Sequence[Sequence[float]] | None = None,
        box: Sequence[float] | None = None,
        chosen: int | None = None,
        *,
        text: str | None = None,
        detector=None,
        box_threshold: float = 0.35,
        text_threshold: float = 0.25,
        width: int | None = None,
        multimask: bool | str = "auto",
    ) -> MaskPicker:
        """A picker that starts from recorded prompts (the headless replay path).

        ``points`` are ``[[x, y, label], ...]`` in image pixels (label 1 include, 0 exclude),
        ``box`` is ``(x0, y0, x1, y1)``, ``chosen`` the candidate to keep; ``text`` starts from
        a text prompt instead of a box (Grounding DINO's boxes are drawn dashed, the best one
        becomes the box, and clicks refine it). See ``ClickSegmenter.from_prompts``, which
        checks them.
        """
        segmenter = ClickSegmenter.from_prompts(
            predictor,
            image,
            points=points,
            box=box,
            chosen=chosen,
            text=text,
            detector=detector,
            box_threshold=box_threshold,
            text_threshold=text_threshold,
            multimask=multimask,
        )
        return cls(segmenter, width=width)

    # ------------------------------------------------------------------ state, read-only

    @property
    def mask(self) -> np.ndarray:
        """The chosen mask, ``HxW bool`` (image size)."""
        return self.segmenter.mask

    @property
    def points(self) -> list:
        """Click points ``(x, y)`` in image pixels."""
        return self.segmenter.points

    @property
    def labels(self) -> list:
        """One label per point: 1 include, 0 exclude."""
        return self.segmenter.labels

    @property
    def box(self):
        """``(x0, y0, x1, y1)`` in image pixels, or ``None``."""
        return self.segmenter.box

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

    # ------------------------------------------------------------------ synthetic input

    def click(self, x: float, y: float, button: int = 0, shift: bool = False) -> None:
        """Click at ``(x, y)`` in IMAGE pixels, as the browser would (tests, headless use).

        Sends ``mousedown``, ``mouseup`` (and ``contextmenu`` for ``button=2``) through the
        event widget's own message handler, the path real browser events take. ``button`` is
        0 (left) or 2 (right); ``shift`` holds the shift key.
        """
        for kind in ("mousedown", "mouseup") + (("contextmenu",) if button == 2 else ()):
            self._send_synthetic(kind, x, y, button, shift)

    def drag(self, x0: float, y0: float, x1: float, y1: float) -> None:
        """Press the left button at ``(x0, y0)`` and release it at ``(x1, y1)`` (image px)."""
        self._send_synthetic("mousedown", x0, y0, 0, False)
        self._send_synthetic("mouseup", x1, y1, 0, False)

    def _send_synthetic(self, kind: str, x: float, y: float, button: int, shift: bool) -> None:
        iw, ih = self.image_size
        if not (0 <= x < iw and 0 <= y < ih):
            raise ValueError(f"({x}, {y}) is outside the {iw}x{ih} image")
        dw, dh = self.display_size
        content = {
            "event": kind,
            "type": kind,
            "button": int(button),
            "buttons": 0 if kind == "mouseup" else (2 if button == 2 else 1),
            "shiftKey": bool(shift),
            "altKey": False,
            "ctrlKey": False,
            "metaKey": False,
            # The inverse of _to_image: the CSS position whose pixel maps back to (x, y).
            "relativeX": (x + 0.5) * dw / iw - 0.5,
            "relativeY": (y + 0.5) * dh / ih - 0.5,
            "boundingRectWidth": dw,
            "boundingRectHeight": dh,
        }
        self.events._handle_custom_msg(content, [])

    # ------------------------------------------------------------------ event handling

    def _to_image(self, event: dict) -> tuple[int, int]:
        """Image pixel ``(x, y)`` under the mouse of an ipyevents mouse event.

        ``relativeX/Y`` are whole CSS pixels from the canvas' top-left corner; the element
        is ``boundingRectWidth x boundingRectHeight`` CSS pixels and shows the whole image.
        The centre of the CSS pixel decides which image pixel was hit.
        """
        iw, ih = self.image_size
        dw, dh = self.display_size
        rect_w = float(event.get("boundingRectWidth") or dw)
        rect_h = float(event.get("boundingRectHeight") or dh)
        x = math.floor((float(event["relativeX"]) + 0.5) * iw / rect_w)
        y = math.floor((float(event["relativeY"]) + 0.5) * ih / rect_h)
        return min(max(x, 0), iw - 1), min(max(y, 0), ih - 1)

    def _on_dom_event(self, event: dict) -> None:
        kind = event.get("event")
        # The right button's mousedown already added its point; contextmenu is watched only
        # so that prevent_default_action suppresses the browser's / Lab's menu.
        if kind not in ("mousedown", "mouseup") or "relativeX" not in event:
            return
        start = time.perf_counter()
        button = int(event.get("button", 0))
        shift = bool(event.get("shiftKey", False))
        x, y = self._to_image(event)
        if kind == "mousedown":
            if button == 2 or (button == 0 and shift):
                changed = self._add_point(x, y, positive=False)
            elif button != 0:
                return
            elif self.mode == "box":
                changed = self._box_press(x, y)
            else:
                changed = self._add_point(x, y, positive=self.mode == "include")
        else:
            if button != 0 or self.mode != "box" or self._swallow_mouseup:
                self._swallow_mouseup = False
                return
            changed = self._box_release(x, y)
        if changed:
            self._refresh()
        else:
            self._draw()  # only the pending box corner or a message is new
        self.last_latency_s = time.perf_counter() - start
        self._update_status()

    def _add_point(self, x: int, y: int, positive: bool) -> bool:
        self._message = ""
        self.segmenter.add_point(x, y, positive=positive)
        return True

    def _box_press(self, x: int, y: int) -> bool:
        if self._anchor is None:
            self._anchor = (x, y)
            self._message = "box: release far away (drag) or click the opposite corner"
            return False
        self._swallow_mouseup = True  # this press finishes the box; ignore its release
        return self._finish_box(x, y)

    def _box_release(self, x: int, y: int) -> bool:
        if self._anchor is None:
            return False
        ax, ay = self._anchor
        sx = self.display_size[0] / self.image_size[0]
        if max(abs(x - ax), abs(y - ay)) * sx < DRAG_THRESHOLD:
            return False  # a click, not a drag: wait for the opposite corner
        return self._finish_box(x, y)

    def _finish_box(self, x: int, y: int) -> bool:
        ax, ay = self._anchor
        x0, x1 = sorted((ax, x))
        y0, y1 = sorted((ay, y))
        if x0 == x1 or y0 == y1:
            self._message = "box: the opposite corner must differ in x and y; click again"
            return False
        self._anchor = None
        self._message = ""
        self.segmenter.set_box(x0, y0, x1, y1)
        return True

    def _run(self, action: Callable[[], object]) -> None:
        """Run a segmenter action from a button, then redraw and notify."""
        start = time.perf_counter()
        self._anchor = None
        self._message = ""
        action()
        self._refresh()
        self.last_latency_s = time.perf_counter() - start
        self._update_status()

    def _on_mode(self, change) -> None:
        if self._anchor is not None:
            self._anchor = None
            self._message = ""
            self._draw()
        self._update_status()

    def _on_candidate(self, change) -> None:
        if self._syncing or change["new"] is None or change["new"] == self.segmenter.chosen:
            return
        self.segmenter.choose(int(change["new"]))
        self._refresh()

    # ------------------------------------------------------------------ drawing

    def _refresh(self, notify: bool = True) -> None:
        """Recompute the overlay, redraw, update the controls and (optionally) notify."""
        self._render()
        self._draw()
        self._sync_candidates()
        self._update_status()
        if notify:
            self._callbacks(self)

    def _display_mask(self) -> np.ndarray | None:
        mask = self.segmenter.mask
        if mask is None or not mask.any():
            return None
        if self.display_size == self.image_size:
            return mask
        small = Image.fromarray(mask).resize(self.display_size, Image.NEAREST)
        return np.asarray(small, dtype=bool)

    def _render(self) -> None:
        mask = self._display_mask()
        if mask is None:
            self.rendered = self._base.copy()
        else:
            self.rendered = np.asarray(masks.overlay(self._base, mask), dtype=np.uint8)

    def _to_display(self, x: float, y: float) -> tuple[float, float]:
        """Centre of image pixel ``(x, y)`` in display pixels."""
        (iw, ih), (dw, dh) = self.image_size, self.display_size
        return (x + 0.5) * dw / iw, (y + 0.5) * dh / ih

    def _draw(self) -> None:
        """Send the whole picture to the canvas in one batch."""
        c = self.canvas
        (iw, ih), (dw, dh) = self.image_size, self.display_size
        with hold_canvas():
            c.clear()
            c.put_image_data(self.rendered, 0, 0)
            # The text prompt's detections, dashed, under the box prompt they gave.
            detections = self.segmenter.detections
            if detections:
                c.stroke_style = _rgb_css(DETECTION_COLOR)
                c.line_width = 1
                c.set_line_dash([6, 4])
                for x0, y0, x1, y1 in detections:
                    c.stroke_rect(
                        x0 * dw / iw, y0 * dh / ih, (x1 - x0) * dw / iw, (y1 - y0) * dh / ih
                    )
                c.set_line_dash([])
            box = self.segmenter.box
            if box is not None:
                x0, y0, x1, y1 = (float(v) for v in box)
                c.stroke_style = _rgb_css(masks.BOX_COLOR)
                c.line_width = 2
                c.stroke_rect(x0 * dw / iw, y0 * dh / ih, (x1 - x0) * dw / iw, (y1 - y0) * dh / ih)
            if self._anchor is not None:
                ax, ay = self._to_display(*self._anchor)
                c.stroke_style = _rgb_css(masks.BOX_COLOR)
                c.line_width = 2
                c.stroke_line(ax - 8, ay, ax + 8, ay)
                c.stroke_line(ax, ay - 8, ax, ay + 8)
            # One plain fill_circle per marker: a handful of points, readable commands.
            for (px, py), label in zip(self.segmenter.points, self.segmenter.labels, strict=True):
                x, y = self._to_display(px, py)
                color = masks.POSITIVE_COLOR if int(label) == 1 else masks.NEGATIVE_COLOR
                c.fill_style = "white"
                c.fill_circle(x, y, MARKER_RADIUS + 2)
                c.fill_style = _rgb_css(color)
                c.fill_circle(x, y, MARKER_RADIUS)

    def _sync_candidates(self) -> None:
        candidates = self.segmenter.candidates
        options = [(f"{i + 1}: {c.score:.2f}", i) for i, c in enumerate(candidates)]
        self._syncing = True
        try:
            if list(self.candidates_buttons.options) != options:
                self.candidates_buttons.options = options
                self.candidates_buttons.tooltips = [
                    f"candidate {i + 1}, SAM's predicted IoU {c.score:.3f}"
                    for i, c in enumerate(candidates)
                ]
            self.candidates_buttons.value = self.segmenter.chosen if candidates else None
        finally:
            self._syncing = False
        # Hidden without candidates; shown (greyed out when there is no choice) otherwise.
        self.candidates_buttons.layout.display = "flex" if options else "none"
        self.candidates_buttons.disabled = len(options) < 2

    def _update_status(self) -> None:
        seg = self.segmenter
        self.undo_button.disabled = not seg.can_undo
        self.redo_button.disabled = not seg.can_redo
        self.reset_button.disabled = not (seg.points or seg.box is not None)
        self.clear_box_button.disabled = seg.box is None
        labels = [int(v) for v in self.segmenter.labels]
        n_in, n_out = labels.count(1), labels.count(0)
        mask = self.segmenter.mask
        area = 100.0 * float(mask.mean()) if mask is not None and mask.size else 0.0
        noun = "point" if len(labels) == 1 else "points"
        parts = [f"{len(labels)} {noun} ({n_in} include, {n_out} exclude)"]
        if self.segmenter.text is not None:
            n = len(self.segmenter.detections)
            found = f"{n} box{'es' if n != 1 else ''} found"
            parts.append(f"text {html.escape(repr(self.segmenter.text))} ({found})")
        elif self.segmenter.box is not None:
            parts.append("box")
        parts.append(f"mask {area:.1f}% of the image")
        if self.last_latency_s is not None:
            sam = getattr(self.segmenter, "last_latency_s", None)
            click = f"last click {1000 * self.last_latency_s:.0f} ms"
            if sam is not None:
                click += f" (SAM {1000 * sam:.0f} ms)"
            parts.append(click)
        if self._message:
            parts.append(f"<b>{self._message}</b>")
        self.status.value = " · ".join(parts)
