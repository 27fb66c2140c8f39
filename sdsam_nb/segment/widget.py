"""``MaskPicker``: click on a picture to segment it with SAM, in a Jupyter / Colab notebook.

The widget is a thin view over a :class:`sdsam_nb.segment.clicks.ClickSegmenter` (points,
box, candidates, undo and redo live there): it maps mouse events to the segmenter's methods
and draws its state, with the public APIs of ipycanvas, ipyevents and ipywidgets only.

Clicks: the canvas ignores the mouse (CSS ``pointer-events: none``, :data:`SURFACE_CSS`);
an ``ipyevents.Event`` on the box around it (``MaskPicker.surface``) sends ``mousedown``,
``mouseup`` and ``contextmenu`` with the button, the modifier keys and ``relativeX/Y`` in
CSS pixels, mapped to image pixels with the element's bounding rectangle, and
``prevent_default_action`` keeps the context menu away. ipycanvas' own mouse events are not
used: they carry no button or keys, fire for a right click too, and a canvas' views send
every move to the kernel, to be read before each click. :meth:`MaskPicker.click` sends a
synthetic event, shaped as ipyevents sends it, to the same handler (tests, headless runs).

Drawing: a ``MultiCanvas`` with two layers (:data:`LAYERS`) inside ``hold_canvas()``:

* ``picture``: the picture at display size, ``put_image_data`` (JPEG), sent once and again
  only when a view reports ``client_ready`` (ipycanvas does not replay drawings);
* ``overlay``, redrawn per click in one batch: the chosen mask tinted with
  :data:`MASK_COLOR` at :data:`MASK_ALPHA`, its outline opaque (:func:`mask_layer`), as
  ``fill_rects`` of its rows' runs (whole pixels, nothing for the browser to decode), or, for
  a speckled mask of more than :data:`MAX_RUNS` runs, as a 2-bit palette PNG of its bounding
  box encoded by Pillow (:func:`layer_png`) in an ``ipywidgets.Image`` that ``draw_image``
  draws (the Image's new bytes go out as a state update before the batch, and the front end
  applies them first); then the markers, the box, a text prompt's detections (dashed) and a
  pending box corner as canvas shapes.

Headless, ``canvas.image_data`` stays ``None``: :attr:`MaskPicker.rendered` composes the
picture and the mask layer in numpy as the browser does.

A busy kernel: mouse events wait in the kernel's queue while a cell runs. The widget follows
IPython's ``pre_run_cell`` / ``post_run_cell``: the status line says the kernel is busy, and
the clicks read back to back once it is free (within :data:`QUEUE_WINDOW_S` of each other,
after a cell or a prediction of :data:`BUSY_S` or more) are drawn at once and predicted
**once** (``ClickSegmenter.add_points``: one action, one undo step). Before a prediction
expected to be slow (the last took :data:`SLOW_S` or more) the marker is drawn and the
status line says SAM is computing.
"""

from __future__ import annotations

import asyncio
import html
import io
import math
import time
import weakref
from collections.abc import Callable, Sequence

import cv2
import ipywidgets as widgets
import numpy as np
from ipycanvas import Canvas, MultiCanvas, hold_canvas
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
"""In box mode, a press and release at least this many display pixels apart make a box."""
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
MAX_RUNS = 5_000
"""A mask layer with more rows' runs than this goes as a PNG, not as rectangles: a subject's
mask has a few runs a row, the speckled masks of random weights tens of thousands."""
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


def _rgb_css(rgb: Sequence[int], alpha: int | None = None) -> str:
    """CSS for ``rgb``, at opacity ``alpha`` / 255 if given (six decimals: exact in 8 bits)."""
    if alpha is None:
        return "rgb({}, {}, {})".format(*(int(c) for c in rgb))
    return "rgba({}, {}, {}, {:.6f})".format(*(int(c) for c in rgb), alpha / 255)


_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
_PALETTE = [0, 0, 0, *MASK_COLOR, *MASK_COLOR]
_ALPHAS = bytes([0, MASK_ALPHA, 255])


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


def layer_runs(index: np.ndarray, limit: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """The rows' runs of a layer's ``index`` (:func:`mask_layer`): ``(tint, outline)``, each
    ``n x 3 int32`` of ``(x, y, width)``, row by row; ``None`` past ``limit`` runs in all."""
    h, w = index.shape
    padded = np.zeros((h, w + 1), np.uint8)  # a zero column: no run crosses into the next row
    padded[:, :w] = index
    flat = padded.ravel()
    starts = np.flatnonzero(np.diff(flat, prepend=np.uint8(0)))
    values = flat[starts]
    if limit is not None and np.count_nonzero(values) > limit:
        return None
    y, x = np.divmod(starts, w + 1)
    runs = np.stack([x, y, np.diff(starts, append=flat.size)], axis=1).astype(np.int32)
    return runs[values == 1], runs[values == 2]


def layer_png(index: np.ndarray) -> bytes:
    """``index`` (:func:`mask_layer`) as a PNG encoded by Pillow: a 3-colour palette (Pillow
    writes 2 bits a pixel) with transparency, zlib level 1 (a few kB, about a millisecond)."""
    image = Image.fromarray(index, "P")
    image.putpalette(_PALETTE)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", transparency=_ALPHAS, compress_level=1)
    return buffer.getvalue()


def layer_rgba(index: np.ndarray) -> np.ndarray:
    """``index`` (:func:`mask_layer`) as the ``h x w x 4 uint8`` RGBA pixels it shows."""
    rgba = np.zeros((*index.shape, 4), np.uint8)
    rgba[index > 0, :3] = MASK_COLOR
    rgba[..., 3] = np.frombuffer(_ALPHAS, np.uint8)[index]
    return rgba


def compose(picture: np.ndarray, rgba: np.ndarray, x: int = 0, y: int = 0) -> np.ndarray:
    """``rgba`` (``h x w x 4 uint8``) drawn over ``picture`` (``H x W x 3 uint8``) at ``(x, y)``,
    as a canvas composes layers ("source-over"); returns a new ``H x W x 3 uint8`` array."""
    out = picture.copy()
    h, w = rgba.shape[:2]
    region = out[y : y + h, x : x + w]
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    blended = region.astype(np.float32) * (1.0 - a) + rgba[..., :3].astype(np.float32) * a
    region[...] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


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
        mask_image: the ``ipywidgets.Image`` that carries a speckled mask layer's PNG.
        mode_buttons, undo_button, redo_button, reset_button, clear_box_button,
        candidates_buttons, status: the controls (ordinary ipywidgets).
        display_size: ``(dw, dh)`` of the canvas in pixels; ``display_image``: the picture at
            that size (``dh x dw x 3 uint8``); ``mask_rgba``: the mask layer
            (``dh x dw x 4 uint8``); ``rendered``: the two composed (``dh x dw x 3 uint8``).
        last_latency_s: seconds the last mouse event took in the kernel (SAM + redraw).
        queued: clicks collected behind a busy kernel, not predicted yet (``[x, y, label]``).
    """

    def __init__(self, segmenter: ClickSegmenter, *, width: int | None = None):
        if not isinstance(segmenter, ClickSegmenter):
            raise ValueError(
                f"segmenter must be a ClickSegmenter, not {type(segmenter).__name__}; "
                "use MaskPicker.from_prompts(predictor, image) to build one"
            )
        enable_colab_widgets()
        self.segmenter = segmenter
        image = segmenter.image
        self.image_size = iw, ih = image.size
        if width is None:
            width = min(iw, DEFAULT_WIDTH)
        if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 16:
            raise ValueError(f"width must be a whole number of pixels >= 16, got {width!r}")
        dw, dh = int(width), max(1, round(ih * int(width) / iw))
        self.display_size = (dw, dh)
        base = image if (dw, dh) == (iw, ih) else image.resize((dw, dh), Image.LANCZOS)
        self._base = np.asarray(base, dtype=np.uint8)
        self._layer: tuple[np.ndarray, int, int] | None = None  # mask_layer() of the mask
        self._runs: tuple[np.ndarray, np.ndarray] | None = None  # its runs, up to MAX_RUNS
        self._area = 0.0
        self.last_latency_s: float | None = None
        self._anchor: tuple[int, int] | None = None  # first box corner, image pixels
        self._swallow_mouseup = False
        self._syncing = False
        self._message = self._busy_note = ""
        self._callbacks = widgets.CallbackDispatcher()
        self.queued: list[list] = []
        self._collect_until = 0.0  # perf_counter() time until which clicks are collected
        self._flush_handle: asyncio.TimerHandle | None = None
        self._busy_since: float | None = None
        self._hooks: tuple | None = None

        self.canvas = MultiCanvas(len(LAYERS), width=dw, height=dh)
        self.layers = {name: self.canvas[k] for k, name in enumerate(LAYERS)}
        self.canvas.add_class("sdsam-picker-canvas")
        self.canvas.layout.width, self.canvas.layout.height = "100%", "auto"
        self.canvas.layout.margin = "0"
        self.canvas.on_client_ready(self._draw_all)
        self.mask_image = widgets.Image(format="png")
        # Natural size, shrunk to fit a narrow cell; clicks map with the element's real size.
        self.surface = widgets.Box(
            [self.canvas],
            layout=widgets.Layout(
                width=f"{dw}px", max_width="100%", overflow="hidden", align_items="flex-start"
            ),
        )
        self.surface.add_class("sdsam-picker-surface")
        self._css = widgets.HTML(SURFACE_CSS, layout=widgets.Layout(display="none"))
        self.events = Event(
            source=self.surface,
            watched_events=["mousedown", "mouseup", "contextmenu"],
            prevent_default_action=True,
        )
        self.events.on_dom_event(self._on_dom_event)

        self.mode_buttons = widgets.ToggleButtons(
            options=[(m, m) for m in MODES],
            tooltips=[
                "left click adds an include point",
                "left click adds an exclude point",
                "drag, or click two opposite corners, to draw a box",
            ],
            style={"button_width": "80px"},
        )
        self.mode_buttons.observe(self._on_mode, "value")

        def button(action, description, tooltip, icon="", width=""):
            made = widgets.Button(description=description, tooltip=tooltip, icon=icon)
            made.layout.width = width
            made.on_click(lambda _: self._run(action))
            return made

        self.undo_button = button(segmenter.undo, "undo", "undo", "undo", "80px")
        self.redo_button = button(segmenter.redo, "redo", "redo", "repeat", "80px")
        self.reset_button = button(
            segmenter.reset, "reset", "remove every point and the box", "trash", "80px"
        )
        self.clear_box_button = button(segmenter.clear_box, "clear box", "remove the box")
        self.candidates_buttons = widgets.ToggleButtons(
            options=[], description="mask", style={"button_width": "90px"}
        )
        self.candidates_buttons.observe(self._on_candidate, "value")
        self.status = widgets.HTML()
        self.status.add_class("sdsam-picker-status")
        buttons = (self.undo_button, self.redo_button, self.reset_button, self.clear_box_button)
        toolbar = widgets.HBox([self.mode_buttons, *buttons])
        super().__init__([toolbar, self.surface, self.candidates_buttons, self.status, self._css])
        self.add_class("sdsam-picker")
        self._watch_kernel()
        self._refresh(picture=True)
        self._update_status()

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
        a text prompt instead of a box (its detections are drawn dashed, the best one becomes
        the box). ``ClickSegmenter.from_prompts`` checks them.
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

    def close(self) -> None:
        """Close the widget and its parts, and stop watching the kernel's cells."""
        if getattr(self, "_hooks", None) is not None:
            self._unwatch_kernel()
        if getattr(self, "_flush_handle", None) is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        for name in ("events", "canvas", "surface", "_css", "mask_image"):
            if getattr(self, name, None) is not None:
                getattr(self, name).close()
        for layer in getattr(self, "layers", {}).values():
            layer.close()
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
    def display_image(self) -> np.ndarray:
        """The picture at the canvas size (``dh x dw x 3 uint8``), without the overlay."""
        return self._base

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
        as the browser composes the layers (without the markers)."""
        if self._layer is None:
            return self._base.copy()
        index, x, y = self._layer
        return compose(self._base, layer_rgba(index), x, y)

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
        # contextmenu is watched only so that prevent_default_action suppresses the menu.
        if kind not in ("mousedown", "mouseup") or "relativeX" not in event:
            return
        start = time.perf_counter()
        button = int(event.get("button", 0))
        x, y = self._to_image(event)
        if kind == "mouseup":
            if button != 0 or self.mode != "box" or self._swallow_mouseup:
                self._swallow_mouseup = False
                return
            self.flush()
            return self._after_event(self._box_release(x, y), start)
        if button == 2 or (button == 0 and event.get("shiftKey")):
            positive = False
        elif button != 0:
            return
        elif self.mode == "box":
            self.flush()
            return self._after_event(self._box_press(x, y), start)
        else:
            positive = self.mode == "include"
        if self._collecting(start):
            return self._queue(x, y, positive, start)
        self.flush()
        self._message = ""
        self._before_prediction([[x, y, int(positive)]])
        self.segmenter.add_point(x, y, positive=positive)
        self._after_event(True, start)

    def _after_event(self, changed: bool, start: float) -> None:
        if changed:
            self._refresh()
        else:
            self._draw()  # only the pending box corner or a message is new
        self._done(start)

    def _done(self, start: float) -> None:
        self.last_latency_s = time.perf_counter() - start
        self._update_status()
        self._check_busy(start)

    def _before_prediction(self, new: list[list]) -> None:
        """Before a prediction expected to be slow: draw the new markers, say "computing"."""
        last = self.segmenter.last_latency_s
        if last is None or last < SLOW_S:
            return
        self._draw(extra=new, add=True)
        self._message = f"computing the mask (SAM took {last:.1f} s last time)…"
        self._update_status()
        self._message = ""

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
        (x0, x1), (y0, y1) = sorted((self._anchor[0], x)), sorted((self._anchor[1], y))
        if x0 == x1 or y0 == y1:
            self._message = "box: the opposite corner must differ in x and y; click again"
            return False
        self._anchor = None
        self._message = ""
        self.segmenter.set_box(x0, y0, x1, y1)
        return True

    def _run(self, action: Callable[[], object]) -> None:
        """Run a segmenter action from a button, then redraw and notify."""
        self.flush()
        start = time.perf_counter()
        self._anchor = None
        self._message = ""
        action()
        self._refresh()
        self._done(start)

    def _on_mode(self, change) -> None:
        if self._anchor is not None:
            self._anchor = None
            self._message = ""
            self._draw()
        self._update_status()

    def _on_candidate(self, change) -> None:
        if self._syncing or change["new"] is None or change["new"] == self.segmenter.chosen:
            return
        self.flush()
        self.segmenter.choose(int(change["new"]))
        self._refresh()
        self._update_status()

    # ------------------------------------------------------------------ a busy kernel

    def _watch_kernel(self) -> None:
        """Follow IPython's ``pre_run_cell`` / ``post_run_cell`` (weakly; :meth:`close`
        removes the hooks), if there is a shell."""
        from IPython import get_ipython

        shell = get_ipython()
        if shell is None or not hasattr(shell, "events"):
            return
        ref = weakref.ref(self)

        def pre_run_cell(info=None):
            if (picker := ref()) is not None:
                picker._on_pre_run_cell()

        def post_run_cell(result=None):
            if (picker := ref()) is not None:
                picker._on_post_run_cell()

        shell.events.register("pre_run_cell", pre_run_cell)
        shell.events.register("post_run_cell", post_run_cell)
        self._hooks = (shell, pre_run_cell, post_run_cell)

    def _unwatch_kernel(self) -> None:
        shell, pre, post = self._hooks
        self._hooks = None
        shell.events.unregister("pre_run_cell", pre)
        shell.events.unregister("post_run_cell", post)

    def _on_pre_run_cell(self) -> None:
        """A cell starts: clicks made now wait in the kernel's queue; say so."""
        self.flush()
        self._busy_since = time.perf_counter()
        self._busy_note = (
            "kernel busy running a cell: clicks made now wait until it is done "
            "(then SAM runs once for all of them)"
        )
        self._update_status()

    def _on_post_run_cell(self) -> None:
        """A cell is done: clicks that queued while it ran are read next; collect them."""
        since, self._busy_since = self._busy_since, None
        if not self._busy_note and since is None:
            return
        self._busy_note = ""
        self._update_status()
        if since is not None:
            self._check_busy(since)

    def _check_busy(self, since: float) -> None:
        """If the kernel was busy from ``since`` for :data:`BUSY_S` or longer, collect the
        clicks that arrive in the next ``2 * QUEUE_WINDOW_S`` (they queued meanwhile)."""
        now = time.perf_counter()
        if now - since >= BUSY_S and _running_loop() is not None:
            self._collect_until = max(self._collect_until, now + 2 * QUEUE_WINDOW_S)

    def _collecting(self, now: float) -> bool:
        return bool(self.queued) or now < self._collect_until

    def _queue(self, x: int, y: int, positive: bool, now: float) -> None:
        """Collect a click that queued behind a busy kernel; predict once they stop coming."""
        self.queued.append([x, y, int(positive)])
        loop = _running_loop()
        if loop is None:  # nothing would call flush(): compute it now
            return self.flush()
        self._collect_until = now + QUEUE_WINDOW_S
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush_handle = loop.call_later(QUEUE_WINDOW_S, self.flush)
        n = len(self.queued)
        self._message = f"{n} click{'s' if n != 1 else ''} made while the kernel was busy…"
        self._draw(extra=self.queued[-1:], add=True)
        self._update_status()

    def flush(self) -> None:
        """Compute the clicks collected behind a busy kernel (:attr:`queued`) now, with one
        prediction for all of them (``ClickSegmenter.add_points``)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._collect_until = 0.0
        if not self.queued:
            return
        start = time.perf_counter()
        queued, self.queued = self.queued, []
        try:
            self._before_prediction([])
            if len(queued) == 1:
                x, y, label = queued[0]
                self.segmenter.add_point(x, y, positive=bool(label))
                self._message = ""
            else:
                self.segmenter.add_points(queued)
                self._message = f"{len(queued)} queued clicks: SAM ran once for all of them"
            self._refresh()
        except Exception as exc:  # runs from the event loop: show it, then raise
            self._message = html.escape(f"error: {type(exc).__name__}: {exc}")
            self._update_status()
            raise
        self._done(start)

    # ------------------------------------------------------------------ drawing

    def _refresh(self, notify: bool = True, picture: bool = False) -> None:
        """Recompute the mask layer, redraw, sync the candidates, notify (the caller updates
        the status line once after it)."""
        mask = self.segmenter.mask
        self._area = 100.0 * float(np.count_nonzero(mask)) / max(mask.size, 1)
        if self.display_size != self.image_size:  # nearest by pixel centres, as PIL's NEAREST
            mask = cv2.resize(
                mask.view(np.uint8), self.display_size, interpolation=cv2.INTER_NEAREST_EXACT
            ).view(bool)
        self._layer = mask_layer(mask)
        self._runs = None if self._layer is None else layer_runs(self._layer[0], MAX_RUNS)
        if self._layer is not None and self._runs is None:
            self.mask_image.value = layer_png(self._layer[0])  # sent now, drawn in _draw
        self._draw(picture=picture)
        self._sync_candidates()
        if notify:
            self._callbacks(self)

    def _to_display(self, x: float, y: float) -> tuple[float, float]:
        """Centre of image pixel ``(x, y)`` in display pixels."""
        (iw, ih), (dw, dh) = self.image_size, self.display_size
        return (x + 0.5) * dw / iw, (y + 0.5) * dh / ih

    def _draw_all(self) -> None:
        """Draw every layer (a view that appears later starts empty)."""
        self._draw(picture=True)

    def _draw(self, *, picture: bool = False, extra=(), add: bool = False) -> None:
        """Send one batch: the picture layer if asked; the overlay redrawn (mask, box,
        detections, markers), or with ``add=True`` only the markers ``extra`` (``[x, y,
        label]``, clicks not in the segmenter yet) drawn on top of it."""
        with hold_canvas():
            if picture:
                self.layers["picture"].clear()
                self.layers["picture"].put_image_data(self._base, 0, 0)
            c = self.layers["overlay"]
            if add:
                return self._draw_markers(c, [((x, y), label) for x, y, label in extra])
            c.clear()
            if self._layer is not None:
                _, x, y = self._layer
                if self._runs is None:
                    c.draw_image(self.mask_image, x, y)  # the PNG's bytes, synced before this
                else:
                    for runs, alpha in zip(self._runs, (MASK_ALPHA, 255), strict=True):
                        if len(runs):
                            c.fill_style = _rgb_css(MASK_COLOR, alpha)
                            c.fill_rects(runs[:, 0] + x, runs[:, 1] + y, runs[:, 2], 1)
            self._draw_shapes(c, extra)

    def _draw_shapes(self, c: Canvas, extra=()) -> None:
        (iw, ih), (dw, dh) = self.image_size, self.display_size

        def rect(x0, y0, x1, y1):
            c.stroke_rect(x0 * dw / iw, y0 * dh / ih, (x1 - x0) * dw / iw, (y1 - y0) * dh / ih)

        if self.segmenter.detections:  # dashed, under the box prompt they gave
            c.stroke_style = _rgb_css(DETECTION_COLOR)
            c.line_width = 1
            c.set_line_dash([6, 4])
            for box in self.segmenter.detections:
                rect(*box)
            c.set_line_dash([])
        if self.segmenter.box is not None:
            c.stroke_style = _rgb_css(masks.BOX_COLOR)
            c.line_width = 2
            rect(*(float(v) for v in self.segmenter.box))
        if self._anchor is not None:
            ax, ay = self._to_display(*self._anchor)
            c.stroke_style = _rgb_css(masks.BOX_COLOR)
            c.line_width = 2
            c.stroke_line(ax - 8, ay, ax + 8, ay)
            c.stroke_line(ax, ay - 8, ax, ay + 8)
        points = [*zip(self.segmenter.points, self.segmenter.labels, strict=True)]
        self._draw_markers(c, points + [((px, py), label) for px, py, label in extra])

    def _draw_markers(self, c: Canvas, points) -> None:
        """A white disc and a coloured one per ``((x, y), label)``."""
        for (px, py), label in points:
            x, y = self._to_display(px, py)
            color = masks.POSITIVE_COLOR if int(label) == 1 else masks.NEGATIVE_COLOR
            c.fill_style = "white"
            c.fill_circle(x, y, MARKER_RADIUS + 2)
            c.fill_style = _rgb_css(color)
            c.fill_circle(x, y, MARKER_RADIUS)

    def _sync_candidates(self) -> None:
        scores = self.segmenter.scores
        options = [(f"{i + 1}: {score:.2f}", i) for i, score in enumerate(scores)]
        buttons = self.candidates_buttons
        self._syncing = True
        try:
            with buttons.hold_sync():  # one message for all of its changes
                if list(buttons.options) != options:
                    buttons.options = options
                    buttons.tooltips = [
                        f"candidate {i + 1}, SAM's predicted IoU {score:.3f}"
                        for i, score in enumerate(scores)
                    ]
                buttons.value = self.segmenter.chosen if scores else None
                buttons.disabled = len(options) < 2
        finally:
            self._syncing = False
        buttons.layout.display = "flex" if options else "none"  # greyed out with one

    def _update_status(self) -> None:
        seg = self.segmenter
        self.undo_button.disabled = not seg.can_undo
        self.redo_button.disabled = not seg.can_redo
        self.reset_button.disabled = not (seg.points or seg.box is not None)
        self.clear_box_button.disabled = seg.box is None
        labels = [int(v) for v in seg.labels]
        noun = "point" if len(labels) == 1 else "points"
        parts = [f"<b>{self._busy_note}</b>"] if self._busy_note else []
        parts.append(f"{len(labels)} {noun} ({labels.count(1)} include, {labels.count(0)} exclude)")
        if seg.text is not None:
            n = len(seg.detections)
            parts.append(
                f"text {html.escape(repr(seg.text))} ({n} box{'es' if n != 1 else ''} found)"
            )
        elif seg.box is not None:
            parts.append("box")
        parts.append(f"mask {self._area:.1f}% of the image")
        if self.last_latency_s is not None:
            click = f"last click {1000 * self.last_latency_s:.0f} ms"
            if seg.last_latency_s is not None:
                click += f" (SAM {1000 * seg.last_latency_s:.0f} ms)"
            parts.append(click)
        if self._message:
            parts.append(f"<b>{self._message}</b>")
        self.status.value = " · ".join(parts)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio loop (the kernel's), or ``None`` (plain Python, tests)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
