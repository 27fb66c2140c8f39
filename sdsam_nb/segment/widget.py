"""``MaskPicker``: click on a picture to segment it with SAM, in a Jupyter / Colab notebook.

A thin view over a :class:`sdsam_nb.segment.clicks.ClickSegmenter` (points, box, candidates,
undo and redo live there): it maps mouse events to the segmenter's methods and draws its
state, with the public APIs of ipycanvas, ipyevents and ipywidgets only.

Mouse: the canvas ignores it (CSS ``pointer-events: none``, :data:`SURFACE_CSS`); an
``ipyevents.Event`` on the box around it (``MaskPicker.surface``) sends ``mousedown`` and
``mouseup`` with the button, the modifier keys and ``relativeX/Y`` in CSS pixels (mapped to
image pixels with the element's bounding rectangle), and keeps ``contextmenu``'s menu away.
ipycanvas' own mouse events carry no button or keys, and a canvas' views send the kernel every
move, to be read before each click. :meth:`MaskPicker.click` and :meth:`MaskPicker.drag` hand
events of the same shape to the same handler (tests, headless runs).

Drawing: a ``MultiCanvas`` of two layers (:data:`LAYERS`), one ``hold_canvas()`` batch per
change: the ``picture`` at display size (``put_image_data``, a JPEG), sent once and again only
when a view reports ``client_ready`` (ipycanvas does not replay drawings), and the ``overlay``:
the mask layer (:func:`mask_layer`) as ``fill_rects`` of its rows' runs (:func:`layer_runs`:
whole pixels, nothing for the browser to decode), then a text prompt's detections (dashed), the
box, a pending box corner and the markers. Headless, ``canvas.image_data`` stays ``None``:
:attr:`MaskPicker.rendered` composes the layers in numpy as the browser does.

A busy kernel: mouse events wait in the kernel's queue while a cell runs. The widget follows
IPython's ``pre_run_cell`` / ``post_run_cell``: the status line says the kernel is busy, and
the clicks read back to back once it is free (within :data:`QUEUE_WINDOW_S` of each other,
after a cell or a prediction of :data:`BUSY_S` or more) are drawn at once and predicted
**once** (``ClickSegmenter.add_points``: one action, one undo step). Before a prediction
expected to be slow (the last took :data:`SLOW_S` or more) the new marker is drawn first and
the status line says SAM is computing.
"""

from __future__ import annotations

import asyncio
import html
import math
import time
from collections.abc import Callable, Sequence

import cv2
import ipywidgets as widgets
import numpy as np
from ipycanvas import MultiCanvas, hold_canvas
from ipyevents import Event
from PIL import Image

from .. import masks
from ..images import ImageLike
from ..models import in_colab
from .clicks import ClickSegmenter

DEFAULT_WIDTH = 768
"""Default display width in CSS pixels: ``min(image width, DEFAULT_WIDTH)``."""
MODES = ("include", "exclude", "box")
LAYERS = ("picture", "overlay")
"""The canvas layers, bottom to top (``MaskPicker.layers``)."""
MARKER_RADIUS = 6
"""Radius of a point marker in display pixels (plus a 2 px white rim)."""
DRAG_THRESHOLD = 4
"""In box mode, a release at least this many display pixels from the first corner in x and in
y (the end of a drag, or of a second click) sets the opposite corner."""
DETECTION_COLOR = (0, 200, 255)
"""Colour of the dashed boxes a text prompt found (the box prompt is ``masks.BOX_COLOR``)."""
MASK_COLOR = (30, 144, 255)
"""Tint of the mask layer (``sdsam_nb.masks.overlay``'s default colour)."""
MASK_ALPHA = 115
"""Opacity of the tint, 0..255 (0.45, as ``masks.overlay``); the outline is opaque."""
BUSY_S = 0.1
"""A cell or prediction that kept the kernel busy this long (s) may have queued clicks."""
QUEUE_WINDOW_S = 0.05
"""Collected clicks are predicted once no other click arrived for this long (s)."""
SLOW_S = 0.25
"""After a prediction this slow (s), the next click's marker is drawn before SAM runs."""
BUSY_NOTE = (
    "kernel busy running a cell: clicks made now wait until it is done "
    "(then SAM runs once for all of them)"
)
SURFACE_CSS = "<style>.sdsam-picker-surface canvas { pointer-events: none; }</style>"
"""The canvas ignores the mouse; the box around it (``MaskPicker.surface``) gets it."""

_colab_widgets_enabled = False


def enable_colab_widgets() -> bool:
    """On Google Colab, turn on the custom widget manager (once per process), which
    ipycanvas and ipyevents need. Returns True if it is on, False outside Colab."""
    global _colab_widgets_enabled
    if not in_colab():
        return False
    if not _colab_widgets_enabled:
        from google.colab import output

        output.enable_custom_widget_manager()
        _colab_widgets_enabled = True
    return True


def _css(rgb: Sequence[int], alpha: int = 255) -> str:
    """CSS for ``rgb`` at opacity ``alpha`` / 255 (six decimals: exact in 8 bits)."""
    return "rgba({}, {}, {}, {:.6f})".format(*(int(c) for c in rgb), alpha / 255)


_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def mask_layer(mask: np.ndarray) -> tuple[np.ndarray, int, int] | None:
    """The mask layer of an ``HxW bool`` mask: ``(index, x, y)``, or ``None`` if it is empty.

    ``index`` is an ``h x w uint8`` crop of the mask's bounding box (one pixel of margin)
    whose top-left corner is pixel ``(x, y)``: 0 outside the mask, 1 inside, 2 on its outline
    (mask pixels with a 4-neighbour outside it).
    """
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


def layer_rgba(index: np.ndarray) -> np.ndarray:
    """``index`` (:func:`mask_layer`) as the ``h x w x 4 uint8`` RGBA pixels it shows."""
    rgba = np.zeros((*index.shape, 4), np.uint8)
    rgba[index > 0, :3] = MASK_COLOR
    rgba[..., 3] = np.array([0, MASK_ALPHA, 255], np.uint8)[index]
    return rgba


class MaskPicker(widgets.VBox):
    """Interactive SAM mask picker: picture, mask overlay, point markers and controls.

    Args:
        segmenter: the state this widget shows and edits (it may already hold points, e.g.
            one built with ``ClickSegmenter.from_prompts``; they are drawn at once).
        width: display width in CSS pixels, default ``min(image width, 768)``; the height
            keeps the aspect ratio. Points are always ``(x, y)`` in image pixels.

    Mouse: a left click adds a point in the current mode (include / exclude); in box mode a
    drag, or two clicks, give opposite corners of the box. A right click or shift + left click
    adds an exclude point in every mode.

    Attributes:
        segmenter: the :class:`~sdsam_nb.segment.clicks.ClickSegmenter`.
        canvas: the ``ipycanvas.MultiCanvas`` (CSS class ``sdsam-picker-canvas``);
            ``layers`` maps :data:`LAYERS` to its canvases.
        surface: the ``ipywidgets.Box`` around the canvas that gets the mouse
            (``sdsam-picker-surface``); ``events``: the ``ipyevents.Event`` on it.
        mode_buttons, undo_button, redo_button, reset_button, clear_box_button,
        candidates_buttons, status: the controls (ordinary ipywidgets).
        display_size: ``(dw, dh)`` of the canvas in pixels; ``display_image``: the picture at
            that size (``dh x dw x 3 uint8``); ``mask_rgba``: the mask layer
            (``dh x dw x 4 uint8``); ``rendered``: the two composed (``dh x dw x 3 uint8``).
        last_latency_s: seconds the last mouse event took in the kernel (SAM + redraw).
        queued: clicks collected behind a busy kernel, not predicted yet (``[x, y, label]``).
    """

    _hooks = _flush_handle = None  # IPython's events while watched; a pending flush()
    _parts: tuple = ()  # the widgets close() closes

    def __init__(self, segmenter: ClickSegmenter, *, width: int | None = None):
        if not isinstance(segmenter, ClickSegmenter):
            raise ValueError(
                f"segmenter must be a ClickSegmenter, not {type(segmenter).__name__}; "
                "use MaskPicker.from_prompts(predictor, image) to build one"
            )
        iw, ih = segmenter.image.size
        width = min(iw, DEFAULT_WIDTH) if width is None else width
        if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 16:
            raise ValueError(f"width must be a whole number of pixels >= 16, got {width!r}")
        enable_colab_widgets()
        self.segmenter = segmenter
        self.image_size = (iw, ih)
        self.display_size = dw, dh = int(width), max(1, round(ih * int(width) / iw))
        image = segmenter.image
        self.display_image = np.asarray(
            image.resize((dw, dh), Image.LANCZOS) if dw != iw else image
        )
        self._layer: tuple[np.ndarray, int, int] | None = None  # mask_layer() at display size
        self._area = 0.0  # of the mask, % of the image
        self._anchor: tuple[int, int] | None = None  # first box corner, image pixels
        self._syncing = False  # the candidates' buttons follow the segmenter
        self._message = ""
        self._busy_since: float | None = None  # perf_counter() time the running cell started
        self._collect_until = 0.0  # perf_counter() time until which clicks are collected
        self._callbacks = widgets.CallbackDispatcher()
        self.last_latency_s: float | None = None
        self.queued: list[list] = []

        self.canvas = MultiCanvas(len(LAYERS), width=dw, height=dh)
        self.layers = {name: self.canvas[k] for k, name in enumerate(LAYERS)}
        self.canvas.add_class("sdsam-picker-canvas")
        self.canvas.layout.width, self.canvas.layout.height = "100%", "auto"
        self.canvas.layout.margin = "0"
        self.canvas.on_client_ready(lambda: self._draw(picture=True))
        # Natural size, shrunk to fit a narrow cell; clicks map with the element's real size.
        layout = widgets.Layout(
            width=f"{dw}px", max_width="100%", overflow="hidden", align_items="flex-start"
        )
        self.surface = widgets.Box([self.canvas], layout=layout)
        self.surface.add_class("sdsam-picker-surface")
        css = widgets.HTML(SURFACE_CSS, layout=widgets.Layout(display="none"))
        self.events = Event(
            source=self.surface,
            watched_events=["mousedown", "mouseup", "contextmenu"],
            prevent_default_action=True,
        )
        self.events.on_dom_event(self._on_dom_event)

        self.mode_buttons = widgets.ToggleButtons(
            options=MODES,
            tooltips=[
                "left click adds an include point",
                "left click adds an exclude point",
                "drag, or click two opposite corners, to draw a box",
            ],
            style={"button_width": "80px"},
        )
        self.mode_buttons.observe(self._on_mode, "value")

        def button(action, description, tooltip, icon="", width="80px"):
            made = widgets.Button(description=description, tooltip=tooltip, icon=icon)
            made.layout.width = width
            made.on_click(lambda _: self._act(time.perf_counter(), action))
            return made

        self.undo_button = button(segmenter.undo, "undo", "undo", "undo")
        self.redo_button = button(segmenter.redo, "redo", "redo", "repeat")
        self.reset_button = button(
            segmenter.reset, "reset", "remove every point and the box", "trash"
        )
        self.clear_box_button = button(segmenter.clear_box, "clear box", "remove the box", "", "")
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
        self._watch_kernel()
        self._refresh(picture=True)
        self._update_status()

    @classmethod
    def from_prompts(
        cls, predictor, image: ImageLike, *args, width: int | None = None, **kwargs
    ) -> MaskPicker:
        """A picker that starts from recorded prompts (the headless replay path).

        The arguments after ``image`` are ``ClickSegmenter.from_prompts``' (which checks them):
        ``points`` ``[[x, y, label], ...]`` in image pixels (label 1 include, 0 exclude),
        ``box`` ``(x0, y0, x1, y1)``, ``chosen`` the candidate to keep; ``text`` (with
        ``detector``, ``box_threshold``, ``text_threshold``) starts from a text prompt instead
        of a box (its detections are drawn dashed, the best one becomes the box); ``multimask``.
        ``width`` is the picker's.
        """
        return cls(ClickSegmenter.from_prompts(predictor, image, *args, **kwargs), width=width)

    def close(self) -> None:
        """Close the widget and its parts, and stop watching the kernel's cells."""
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

    @property
    def mask_rgba(self) -> np.ndarray:
        """The mask layer (``dh x dw x 4 uint8``): :data:`MASK_COLOR` at :data:`MASK_ALPHA`
        inside the mask, opaque on its outline, transparent elsewhere."""
        dw, dh = self.display_size
        out = np.zeros((dh, dw, 4), np.uint8)
        if self._layer is not None:
            index, x, y = self._layer
            out[y : y + index.shape[0], x : x + index.shape[1]] = layer_rgba(index)
        return out

    @property
    def rendered(self) -> np.ndarray:
        """The picture with the mask layer over it (``dh x dw x 3 uint8``), composed in numpy
        as the browser composes the layers ("source-over"), without the markers."""
        rgba = self.mask_rgba.astype(np.float32)
        a = rgba[..., 3:] / 255.0
        return np.rint(self.display_image * (1.0 - a) + rgba[..., :3] * a).astype(np.uint8)

    def on_change(self, callback: Callable[[MaskPicker], None], remove: bool = False) -> None:
        """Call ``callback(picker)`` after every change of points, box or chosen mask."""
        self._callbacks.register_callback(callback, remove=remove)

    # ------------------------------------------------------------------ synthetic input

    def click(self, x: float, y: float, button: int = 0, shift: bool = False) -> None:
        """Click at ``(x, y)`` in IMAGE pixels: the events ipyevents would send, given to the
        picker's handler; ``button`` 0 (left) or 2 (right), ``shift`` held or not. The click is
        computed before this returns."""
        for kind in ("mousedown", "mouseup") + (("contextmenu",) if button == 2 else ()):
            self._send_synthetic(kind, x, y, button, shift)
        self.flush()

    def drag(self, x0: float, y0: float, x1: float, y1: float) -> None:
        """Press the left button at ``(x0, y0)`` and release it at ``(x1, y1)`` (image px)."""
        self._send_synthetic("mousedown", x0, y0, 0, False)
        self._send_synthetic("mouseup", x1, y1, 0, False)

    def _send_synthetic(self, kind: str, x: float, y: float, button: int, shift: bool) -> None:
        (iw, ih), (dw, dh) = self.image_size, self.display_size
        if not (0 <= x < iw and 0 <= y < ih):
            raise ValueError(f"({x}, {y}) is outside the {iw}x{ih} image")
        content = {
            "event": kind,
            "type": kind,
            "button": int(button),
            "shiftKey": bool(shift),
            "relativeX": (x + 0.5) * dw / iw - 0.5,  # maps back to (x, y) in _to_image
            "relativeY": (y + 0.5) * dh / ih - 0.5,
            "boundingRectWidth": dw,
            "boundingRectHeight": dh,
        }
        self._on_dom_event(content)  # the handler ipyevents calls with a browser's event

    # ------------------------------------------------------------------ event handling

    def _to_image(self, event: dict) -> tuple[int, int]:
        """Image pixel under an ipyevents mouse event: ``relativeX/Y`` are whole CSS pixels in
        an element of ``boundingRectWidth x boundingRectHeight`` that shows the whole image."""
        (iw, ih), (dw, dh) = self.image_size, self.display_size
        rect_w = float(event.get("boundingRectWidth") or dw)
        rect_h = float(event.get("boundingRectHeight") or dh)
        x = math.floor((float(event["relativeX"]) + 0.5) * iw / rect_w)
        y = math.floor((float(event["relativeY"]) + 0.5) * ih / rect_h)
        return min(max(x, 0), iw - 1), min(max(y, 0), ih - 1)

    def _on_dom_event(self, event: dict) -> None:
        kind = event.get("event")
        if kind not in ("mousedown", "mouseup") or "relativeX" not in event:
            return  # contextmenu is watched only so that its default action is prevented
        start = time.perf_counter()
        button = int(event.get("button", 0))
        x, y = self._to_image(event)
        exclude = button == 2 or (button == 0 and bool(event.get("shiftKey")))
        if button == 0 and not exclude and self.mode == "box":
            return self._box_corner(kind, x, y, start)
        if kind != "mousedown" or (button != 0 and not exclude):
            return
        click = [x, y, int(not exclude and self.mode == "include")]
        if self.queued or start < self._collect_until:
            return self._queue(click, start)
        self._act(start, self._predict, [click], markers=[click])

    def _box_corner(self, kind: str, x: int, y: int, start: float) -> None:
        """Box mode: a press sets the first corner (if none is pending); a release at least
        :data:`DRAG_THRESHOLD` display pixels from it in x and in y sets the opposite one."""
        if kind == "mousedown" and self._anchor is None:
            self.flush()
            self._anchor = (x, y)
            self._message = "box: drag, or click the opposite corner"
            self._draw()
            self._done(start)
        elif kind == "mouseup" and self._anchor is not None:
            (ax, ay), scale = self._anchor, self.display_size[0] / self.image_size[0]
            if min(abs(x - ax), abs(y - ay)) * scale >= DRAG_THRESHOLD:
                self._act(start, self.segmenter.set_box, ax, ay, x, y)

    def _predict(self, clicks: list[list]) -> None:
        if len(clicks) == 1:
            x, y, label = clicks[0]
            self.segmenter.add_point(x, y, positive=bool(label))
        else:
            self.segmenter.add_points(clicks)

    def _act(self, start: float, action: Callable, *args, markers=None, message="") -> None:
        """Compute the clicks collected so far, run ``action(*args)`` (a segmenter change),
        redraw, notify and show ``message``. ``markers``: the clicks (``[x, y, label]``) the
        action predicts, drawn first if SAM is expected to be slow."""
        self.flush()
        self._anchor = None
        last = self.segmenter.last_latency_s
        if markers is not None and last is not None and last >= SLOW_S:
            self._show_clicks(markers, f"computing the mask (SAM took {last:.1f} s last time)…")
        action(*args)
        self._message = message
        self._refresh()
        self._done(start)

    def _done(self, start: float) -> None:
        self.last_latency_s = time.perf_counter() - start
        self._update_status()
        self._check_busy(start)

    def _on_mode(self, change) -> None:
        self._anchor = None
        self._message = ""
        self._draw()
        self._update_status()

    def _on_candidate(self, change) -> None:
        if not self._syncing and change["new"] not in (None, self.segmenter.chosen):
            self._act(time.perf_counter(), self.segmenter.choose, int(change["new"]))

    # ------------------------------------------------------------------ a busy kernel

    def _watch_kernel(self) -> None:
        """Follow IPython's ``pre_run_cell`` / ``post_run_cell``, if there is a shell, until
        :meth:`close` (ipywidgets holds every open widget anyway)."""
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None and hasattr(shell, "events"):
            self._hooks = shell.events
            shell.events.register("pre_run_cell", self._on_cell_start)
            shell.events.register("post_run_cell", self._on_cell_end)

    def _on_cell_start(self, info=None) -> None:
        """A cell starts: clicks made now wait in the kernel's queue (the status line says so)."""
        self.flush()
        self._busy_since = time.perf_counter()
        self._update_status()

    def _on_cell_end(self, result=None) -> None:
        """A cell is done: clicks that queued while it ran are read next; collect them."""
        if self._busy_since is not None:
            self._check_busy(self._busy_since)
            self._busy_since = None
        self._update_status()

    def _check_busy(self, since: float) -> None:
        """If the kernel was busy from ``since`` for :data:`BUSY_S` or longer, collect the
        clicks that arrive in the next ``2 * QUEUE_WINDOW_S`` (they queued meanwhile)."""
        now = time.perf_counter()
        if now - since >= BUSY_S and _running_loop() is not None:
            self._collect_until = max(self._collect_until, now + 2 * QUEUE_WINDOW_S)

    def _queue(self, click: list, now: float) -> None:
        """Collect a click that queued behind a busy kernel; predict once they stop coming."""
        self.queued.append(click)
        loop = _running_loop()
        if loop is None:  # nothing would call flush(): compute it now
            return self.flush()
        self._collect_until = now + QUEUE_WINDOW_S
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush_handle = loop.call_later(QUEUE_WINDOW_S, self.flush)
        n = len(self.queued)
        self._show_clicks([click], f"{n} click{'s' * (n != 1)} made while the kernel was busy…")

    def flush(self) -> None:
        """Compute the clicks collected behind a busy kernel (:attr:`queued`) now, with one
        prediction for all of them (``ClickSegmenter.add_points``)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._collect_until = 0.0
        queued, self.queued = self.queued, []
        if not queued:
            return
        n = len(queued)
        message = f"{n} queued clicks: SAM ran once for all of them" if n > 1 else ""
        try:
            self._act(time.perf_counter(), self._predict, queued, markers=[], message=message)
        except Exception as exc:  # runs from the event loop: show it, then raise
            self._message = html.escape(f"error: {type(exc).__name__}: {exc}")
            self._update_status()
            raise

    # ------------------------------------------------------------------ drawing

    def _refresh(self, picture: bool = False) -> None:
        """Recompute the mask layer, redraw, sync the candidates and notify (the caller
        updates the status line after it)."""
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
        (iw, ih), (dw, dh) = self.image_size, self.display_size
        return (x + 0.5) * dw / iw, (y + 0.5) * dh / ih

    def _draw(self, picture: bool = False) -> None:
        """Send one batch: the picture layer if asked, then the overlay redrawn: the mask
        layer, the detections (dashed), the box, a pending corner and the markers."""
        seg, c = self.segmenter, self.layers["overlay"]
        sx, sy = (d / i for d, i in zip(self.display_size, self.image_size, strict=True))

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

    def _sync_candidates(self) -> None:
        scores, buttons = self.segmenter.scores, self.candidates_buttons
        options = [(f"{i + 1}: {score:.2f}", i) for i, score in enumerate(scores)]
        self._syncing = True
        try:
            with buttons.hold_sync():  # one message for all of its changes
                if list(buttons.options) != options:
                    buttons.options = options
                    buttons.tooltips = [f"SAM's predicted IoU {score:.3f}" for score in scores]
                buttons.value = self.segmenter.chosen if scores else None
                buttons.disabled = len(options) < 2  # greyed out with one
        finally:
            self._syncing = False
        buttons.layout.display = "flex" if options else "none"

    def _update_status(self) -> None:
        seg = self.segmenter
        self.undo_button.disabled = not seg.can_undo
        self.redo_button.disabled = not seg.can_redo
        self.reset_button.disabled = not (seg.points or seg.box is not None)
        self.clear_box_button.disabled = seg.box is None
        labels = [int(v) for v in seg.labels]
        n = len(labels)
        parts = [] if self._busy_since is None else [f"<b>{BUSY_NOTE}</b>"]
        parts.append(
            f"{n} point{'s' * (n != 1)} ({labels.count(1)} include, {n - labels.count(1)} exclude)"
        )
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
