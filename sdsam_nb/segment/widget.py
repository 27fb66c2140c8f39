"""``MaskPicker``: click on a picture to segment it with SAM, in a Jupyter / Colab notebook.

The widget is a thin view over a :class:`sdsam_nb.segment.clicks.ClickSegmenter`: every decision
(which points, which box, which candidate mask, undo and redo) lives in the segmenter; the
widget maps mouse events to its methods and draws its state.

How a click travels
-------------------
The canvas (an ``ipycanvas.MultiCanvas``) only draws, and ignores the mouse (CSS
``pointer-events: none``, :data:`SURFACE_CSS`). Clicks come from **one** source, an
``ipyevents.Event`` watching ``mousedown``, ``mouseup`` and ``contextmenu`` on the box around
the canvas (``MaskPicker.surface``, exactly the canvas' size) with
``prevent_default_action=True`` (no browser or JupyterLab context menu on a right click):

1. the browser sends ``{"event": "mousedown", "button": 0|2, "shiftKey": ..., "relativeX":
   ..., "boundingRectWidth": ..., ...}`` (CSS pixels) to the kernel as a custom message;
2. :meth:`MaskPicker._on_dom_event` maps ``relativeX/Y`` to image pixels with the element's
   bounding rectangle (so a canvas shrunk by CSS still maps right, and so does an image that
   is shown smaller than it is), then calls ``segmenter.add_point`` / ``set_box``;
3. the widget sends what changed (one ``hold_canvas()`` batch: the mask layer and the
   markers) and calls the :meth:`on_change` callbacks.

ipycanvas' own ``on_mouse_down`` is deliberately *not* used: it reports only ``(x, y)`` — no
button, no modifier keys — and it also fires for a right click, so listening to both sources
would add every point twice (once as "include" from ipycanvas, once from ipyevents). Nor may
the canvas see the mouse at all: its views send every mouse event, moves included, to the
kernel, which must read them before the click's own message (two or three a click, and a
queue of moves behind a slow prediction).
:meth:`MaskPicker.click` sends a synthetic event through the very same message handler; tests
and headless runs use it.

Drawing: two layers
-------------------
The browser composes two canvases (``MultiCanvas``, :data:`LAYERS`), so that a click sends
only what changed:

* ``picture``: the picture at display size, sent once (JPEG, ``put_image_data``) and again
  only when a view reports ``client_ready`` (ipycanvas does not replay drawings to a view that
  appears later);
* ``overlay``, redrawn per click in one batch: the chosen mask (:func:`mask_layer`: tinted
  with :data:`MASK_COLOR` at :data:`MASK_ALPHA`, its outline opaque) as the rows' runs of
  each colour, one ``fill_rects`` each (:func:`layer_runs`: whole pixels, so the browser fills
  exactly the mask's pixels, with nothing to decode: a picture sent to ipycanvas is loaded
  as an ``<img>`` from a blob, a round of the browser's image loading on every click), then
  the include (green) / exclude (red) markers, the box, a text prompt's detections (dashed)
  and a pending box corner as canvas shapes. A speckled mask with more than
  :data:`MAX_RUNS` runs goes as a PNG of its bounding box instead, 2 bits a pixel
  (:func:`layer_png`). One layer per click: the browser composes the layers once (a
  separate markers layer would double that work).

Headless, ``canvas.image_data`` stays ``None``: all state is in the segmenter and in numpy
arrays; :attr:`MaskPicker.rendered` composes the picture and the mask layer in numpy exactly
as the browser does.

A busy kernel
-------------
Mouse events are comm messages: while the kernel runs another cell they wait in its queue.
The widget therefore watches IPython's ``pre_run_cell`` / ``post_run_cell`` events: while a
cell runs, the status line says that the kernel is busy and that clicks wait (the status
message goes out before the cell's code starts). Clicks that queued up behind a busy kernel
(a cell, or a SAM prediction slower than :data:`BUSY_S`) are read back to back once it is
free; the widget collects every click that arrives within :data:`QUEUE_WINDOW_S` of the
previous one, draws their markers, and runs SAM **once** for the final state
(``ClickSegmenter.add_points``: one action, one undo step, replayed exactly). A click on an
idle kernel is computed at once. Before a prediction that is expected to be slow (the last
one took :data:`SLOW_S` or more) the new marker is drawn and the status line says SAM is
computing.
"""

from __future__ import annotations

import asyncio
import html
import math
import struct
import time
import weakref
import zlib
from collections.abc import Callable, Sequence

import cv2
import ipywidgets as widgets
import numpy as np
from ipycanvas import Canvas, MultiCanvas, hold_canvas
from ipycanvas.canvas import COMMANDS
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
"""Colour of the dashed boxes a text prompt found (the box prompt itself is ``BOX_COLOR``)."""
MASK_COLOR = (30, 144, 255)
"""Tint of the mask layer (``sdsam_nb.masks.overlay``'s default colour)."""
MASK_ALPHA = 115
"""Opacity of the tint, 0..255 (115 / 255 = 0.45, ``masks.overlay``'s default); the mask's
outline is opaque."""
BUSY_S = 0.1
"""A cell or a prediction that kept the kernel busy this long (seconds) may have queued
clicks: the clicks read right after it are collected and predicted once."""
QUEUE_WINDOW_S = 0.05
"""Collected clicks are predicted once no other click arrived for this long (seconds); the
first queued click may come up to ``2 * QUEUE_WINDOW_S`` after the kernel is free."""
SLOW_S = 0.25
"""When the last prediction took this long (seconds) or longer, the next click's marker is
drawn and "computing" shown before SAM runs."""
MAX_RUNS = 5_000
"""A mask layer with more rows' runs than this is sent as a PNG, not as rectangles: a
subject's mask is a few runs a row (the browser benchmark's disc: under a thousand at
768x576), the speckled masks of random weights tens of thousands, for which the browser's loop
of rectangles costs more than loading the small PNG."""
SURFACE_CSS = "<style>.sdsam-picker-surface canvas { pointer-events: none; }</style>"
"""The canvas ignores the mouse; the box around it (``MaskPicker.surface``) gets it. ipycanvas'
views send every mouse event they see to the kernel, moves included, one message each: a
click would queue two or three messages the kernel must read before the click's own, and a
mouse moved over the picture while SAM computes would queue dozens."""

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


def _rgba_css(rgb: Sequence[int], alpha: int) -> str:
    """CSS for ``rgb`` at opacity ``alpha`` / 255 (six decimals: the browser's 8 bits get
    ``alpha`` back)."""
    return "rgba({}, {}, {}, {:.6f})".format(*(int(c) for c in rgb), alpha / 255)


_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def mask_layer(mask: np.ndarray) -> tuple[np.ndarray, int, int] | None:
    """The mask layer of a display-size mask: ``(index, x, y)`` or ``None`` for an empty mask.

    ``index`` is an ``h x w uint8`` crop of the mask's bounding box whose top-left corner is
    display pixel ``(x, y)``: 0 outside the mask, 1 inside, 2 on its outline (mask pixels with a
    4-neighbour outside it). :func:`layer_rgba` and :func:`layer_png` turn it into pixels.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    # One pixel of margin keeps the outline of a mask that touches the crop's edge right.
    y0, x0 = max(y0 - 1, 0), max(x0 - 1, 0)
    y1, x1 = min(y1 + 1, mask.shape[0]), min(x1 + 1, mask.shape[1])
    inside = np.ascontiguousarray(mask[y0:y1, x0:x1], dtype=np.uint8)
    index = inside + (inside & (1 - cv2.erode(inside, _CROSS)))
    return index, int(x0), int(y0)


def layer_runs(index: np.ndarray, limit: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """The rows' runs of a mask layer's ``index`` (:func:`mask_layer`): ``(tint, outline)``,
    each ``n x 3 int32`` of ``(x, y, width)`` (the runs of 1, the runs of 2), row by row;
    ``None`` if there are more than ``limit`` runs in all.

    One pass over the pixels: a zero column closes every row, so a run never crosses into
    the next one.
    """
    h, w = index.shape
    padded = np.zeros((h, w + 1), np.uint8)
    padded[:, :w] = index
    flat = padded.ravel()
    starts = np.flatnonzero(np.diff(flat, prepend=np.uint8(0)))  # where a new value begins
    values = flat[starts]
    if limit is not None and np.count_nonzero(values) > limit:
        return None
    widths = np.diff(starts, append=flat.size)
    y, x = np.divmod(starts, w + 1)
    runs = np.stack([x, y, widths], axis=1).astype(np.int32)
    return runs[values == 1], runs[values == 2]


_PALETTE = [0, 0, 0, *MASK_COLOR, *MASK_COLOR]
_ALPHAS = bytes([0, MASK_ALPHA, 255])


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def layer_png(index: np.ndarray) -> bytes:
    """``index`` (from :func:`mask_layer`) as a PNG: 2-bit palette with transparency, zlib RLE.

    Written directly (IHDR, PLTE, tRNS, one IDAT): packing 4 pixels a byte with numpy and
    compressing the runs takes about half the time of Pillow's palette PNG encoder, and a
    768x576 layer is a few kB (tens of kB for the speckled masks of random weights).
    """
    h, w = index.shape
    quads = np.pad(index, ((0, 0), (0, -w % 4))).reshape(h, -1, 4)
    rows = np.zeros((h, quads.shape[1] + 1), np.uint8)  # column 0: filter type 0 (none)
    rows[:, 1:] = (quads[..., 0] << 6) | (quads[..., 1] << 4) | (quads[..., 2] << 2) | quads[..., 3]
    packer = zlib.compressobj(1, zlib.DEFLATED, zlib.MAX_WBITS, 9, zlib.Z_RLE)
    data = packer.compress(rows.tobytes()) + packer.flush()
    header = struct.pack(">IIBBBBB", w, h, 2, 3, 0, 0, 0)  # 2 bits, palette colour
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"PLTE", bytes(_PALETTE))
        + _png_chunk(b"tRNS", _ALPHAS)
        + _png_chunk(b"IDAT", data)
        + _png_chunk(b"IEND", b"")
    )


def layer_rgba(index: np.ndarray) -> np.ndarray:
    """``index`` (from :func:`mask_layer`) as the ``h x w x 4 uint8`` RGBA pixels it shows."""
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


def _put_png(layer: Canvas, png: bytes, x: int, y: int) -> None:
    """``layer.put_image_data`` for bytes that are already an encoded image.

    ``put_image_data`` encodes an array itself (RGBA: a full 8-bit PNG at zlib's default
    level); the front end decodes whatever image the bytes hold, so the same command with
    :func:`layer_png`'s bytes draws the small palette PNG.
    """
    layer._canvas_manager.send_draw_command(layer, COMMANDS["putImageData"], [x, y], [png])


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
        canvas: the ``ipycanvas.MultiCanvas`` (CSS class ``sdsam-picker-canvas``).
        surface: the ``ipywidgets.Box`` around the canvas that gets the mouse events (CSS
            class ``sdsam-picker-surface``).
        layers: ``{"picture": Canvas, "overlay": Canvas}`` (see :data:`LAYERS`).
        events: the ``ipyevents.Event`` that delivers the mouse events.
        mode_buttons, undo_button, redo_button, reset_button, clear_box_button,
        candidates_buttons, status: the controls (ordinary ipywidgets).
        display_image: ``dh x dw x 3 uint8``, the picture at the canvas size, no overlay.
        rendered: ``dh x dw x 3 uint8``, the picture with the mask layer over it.
        mask_rgba: ``dh x dw x 4 uint8``, the mask layer alone.
        display_size: ``(dw, dh)`` of the canvas in pixels.
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
        self._layer: tuple[np.ndarray, int, int] | None = None  # mask_layer() of the mask
        # the mask layer as sent: its rows' runs (tint, outline), or, past MAX_RUNS, a PNG
        self._runs: tuple[np.ndarray, np.ndarray] | None = None
        self._png: bytes | None = None
        self._area = 0.0
        self.last_latency_s: float | None = None
        self._anchor: tuple[int, int] | None = None  # first box corner, image pixels
        self._swallow_mouseup = False
        self._syncing = False
        self._message = ""
        self._busy_note = ""
        self._callbacks = widgets.CallbackDispatcher()
        # Clicks that queued behind a busy kernel (see the module's docstring).
        self.queued: list[list] = []
        self._collect_until = 0.0  # perf_counter() time until which clicks are collected
        self._flush_handle: asyncio.TimerHandle | None = None
        self._busy_since: float | None = None
        self._hooks: tuple | None = None

        self.canvas = MultiCanvas(len(LAYERS), width=dw, height=dh)
        self.layers = {name: self.canvas[k] for k, name in enumerate(LAYERS)}
        self.canvas.add_class("sdsam-picker-canvas")
        self.canvas.layout.width = "100%"
        self.canvas.layout.height = "auto"
        self.canvas.layout.margin = "0"
        self.canvas.on_client_ready(self._draw_all)
        # The surface gets the mouse; the canvas in it ignores it (SURFACE_CSS). Natural size
        # (a VBox would stretch it to the cell's width), shrunk to fit a narrow cell with its
        # aspect kept; clicks are mapped with the element's real CSS size.
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
        self.status.add_class("sdsam-picker-status")
        toolbar = widgets.HBox(
            [
                self.mode_buttons,
                self.undo_button,
                self.redo_button,
                self.reset_button,
                self.clear_box_button,
            ]
        )
        super().__init__([toolbar, self.surface, self.candidates_buttons, self.status, self._css])
        self.add_class("sdsam-picker")
        self._watch_kernel()
        self._refresh(picture=True)
        self._update_status()

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

    def close(self) -> None:
        """Close the widget and its canvas, and stop watching the kernel's cells."""
        if getattr(self, "_hooks", None) is not None:
            self._unwatch_kernel()
        handle = getattr(self, "_flush_handle", None)
        if handle is not None:
            handle.cancel()
            self._flush_handle = None
        for name in ("events", "canvas", "surface", "_css"):
            part = getattr(self, name, None)
            if part is not None:
                part.close()
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
        as the browser composes the layers (the markers are not included)."""
        if self._layer is None:
            return self._base.copy()
        index, x, y = self._layer
        return compose(self._base, layer_rgba(index), x, y)

    def on_change(self, callback: Callable[[MaskPicker], None], remove: bool = False) -> None:
        """Call ``callback(picker)`` after every change of points, box or chosen mask."""
        self._callbacks.register_callback(callback, remove=remove)

    # ------------------------------------------------------------------ synthetic input

    def click(self, x: float, y: float, button: int = 0, shift: bool = False) -> None:
        """Click at ``(x, y)`` in IMAGE pixels, as the browser would (tests, headless use).

        Sends ``mousedown``, ``mouseup`` (and ``contextmenu`` for ``button=2``) through the
        event widget's own message handler, the path real browser events take. ``button`` is
        0 (left) or 2 (right); ``shift`` holds the shift key. The click is computed before
        this returns (clicks collected behind a busy kernel too).
        """
        for kind in ("mousedown", "mouseup") + (("contextmenu",) if button == 2 else ()):
            self._send_synthetic(kind, x, y, button, shift)
        self.flush()

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
                positive = False
            elif button != 0:
                return
            elif self.mode == "box":
                self.flush()
                changed = self._box_press(x, y)
                self._after_event(changed, start)
                return
            else:
                positive = self.mode == "include"
            if self._collecting(start):
                self._queue(x, y, positive, start)
                return
            self.flush()
            changed = self._add_point(x, y, positive)
        else:
            if button != 0 or self.mode != "box" or self._swallow_mouseup:
                self._swallow_mouseup = False
                return
            self.flush()
            changed = self._box_release(x, y)
        self._after_event(changed, start)

    def _after_event(self, changed: bool, start: float) -> None:
        if changed:
            self._refresh()
        else:
            self._draw()  # only the pending box corner or a message is new
        self.last_latency_s = time.perf_counter() - start
        self._update_status()
        self._check_busy(start)

    def _add_point(self, x: int, y: int, positive: bool) -> bool:
        self._message = ""
        self._before_prediction([[x, y, int(positive)]])
        self.segmenter.add_point(x, y, positive=positive)
        return True

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
        self.flush()
        start = time.perf_counter()
        self._anchor = None
        self._message = ""
        action()
        self._refresh()
        self.last_latency_s = time.perf_counter() - start
        self._update_status()
        self._check_busy(start)

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
        """Follow IPython's cells (``pre_run_cell`` / ``post_run_cell``), if there is a shell.

        The callbacks hold the picker weakly; :meth:`close` removes them.
        """
        try:
            from IPython import get_ipython
        except ImportError:  # pragma: no cover - ipywidgets depends on IPython
            return
        shell = get_ipython()
        if shell is None or not hasattr(shell, "events"):
            return
        ref = weakref.ref(self)

        def pre_run_cell(info=None):
            picker = ref()
            if picker is not None:
                picker._on_pre_run_cell()

        def post_run_cell(result=None):
            picker = ref()
            if picker is not None:
                picker._on_post_run_cell()

        shell.events.register("pre_run_cell", pre_run_cell)
        shell.events.register("post_run_cell", post_run_cell)
        self._hooks = (shell, pre_run_cell, post_run_cell)

    def _unwatch_kernel(self) -> None:
        if self._hooks is None:
            return
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
        """If the kernel was busy from ``since`` until now for :data:`BUSY_S` or longer, collect
        the clicks that arrive in the next ``2 * QUEUE_WINDOW_S`` (they queued meanwhile)."""
        now = time.perf_counter()
        if now - since < BUSY_S or _running_loop() is None:
            return
        self._collect_until = max(self._collect_until, now + 2 * QUEUE_WINDOW_S)

    def _collecting(self, now: float) -> bool:
        return bool(self.queued) or now < self._collect_until

    def _queue(self, x: int, y: int, positive: bool, now: float) -> None:
        """Collect a click that queued behind a busy kernel; predict once they stop coming."""
        loop = _running_loop()
        if loop is None:  # nothing would call flush(): compute it now
            self.queued.append([x, y, int(positive)])
            self.flush()
            return
        self.queued.append([x, y, int(positive)])
        self._collect_until = now + QUEUE_WINDOW_S
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush_handle = loop.call_later(QUEUE_WINDOW_S, self.flush)
        n = len(self.queued)
        self._message = f"{n} click{'s' if n != 1 else ''} made while the kernel was busy…"
        self._draw(extra=self.queued[-1:], add=True)
        self._update_status()

    def flush(self) -> None:
        """Compute the clicks collected behind a busy kernel (:attr:`queued`) now: one
        prediction for all of them (``ClickSegmenter.add_points``). Nothing to do otherwise."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._collect_until = 0.0
        if not self.queued:
            return
        start = time.perf_counter()
        queued, self.queued = self.queued, []
        n = len(queued)
        try:
            self._before_prediction([])
            if n == 1:
                x, y, label = queued[0]
                self.segmenter.add_point(x, y, positive=bool(label))
                self._message = ""
            else:
                self.segmenter.add_points(queued)
                self._message = f"{n} queued clicks: SAM ran once for all of them"
            self._refresh()
        except Exception as exc:  # runs from the event loop: show it, then raise
            self._message = html.escape(f"error: {type(exc).__name__}: {exc}")
            self._update_status()
            raise
        self.last_latency_s = time.perf_counter() - start
        self._update_status()
        self._check_busy(start)

    # ------------------------------------------------------------------ drawing

    def _refresh(self, notify: bool = True, picture: bool = False) -> None:
        """Recompute the mask layer, redraw, update the candidates and (optionally) notify.

        The caller updates the status line once after it (with the click's latency): each
        update is a message, and a repaint of the status line in the browser.
        """
        self._render()
        self._draw(picture=picture)
        self._sync_candidates()
        if notify:
            self._callbacks(self)

    def _render(self) -> None:
        """The mask layer of the chosen mask at display size (:func:`mask_layer`), as a PNG."""
        mask = self.segmenter.mask
        self._area = 100.0 * float(np.count_nonzero(mask)) / max(mask.size, 1)
        if self.display_size != self.image_size:
            # Nearest neighbour by pixel centres (PIL's NEAREST), about 4x faster than PIL.
            mask = cv2.resize(
                mask.view(np.uint8), self.display_size, interpolation=cv2.INTER_NEAREST_EXACT
            ).view(bool)
        self._layer = mask_layer(mask)
        self._runs = self._png = None
        if self._layer is not None:
            self._runs = layer_runs(self._layer[0], MAX_RUNS)
            if self._runs is None:
                self._png = layer_png(self._layer[0])

    def _to_display(self, x: float, y: float) -> tuple[float, float]:
        """Centre of image pixel ``(x, y)`` in display pixels."""
        (iw, ih), (dw, dh) = self.image_size, self.display_size
        return (x + 0.5) * dw / iw, (y + 0.5) * dh / ih

    def _draw_all(self) -> None:
        """Draw every layer (a view that appears later starts empty)."""
        self._draw(picture=True)

    def _draw(self, *, picture: bool = False, extra=(), add: bool = False) -> None:
        """Send what changed in one batch: the picture layer only when asked; the overlay
        (mask, then markers, box, detections) redrawn, or with ``add=True`` only the markers
        ``extra`` drawn on top of it (``[x, y, label]``: clicks not in the segmenter yet)."""
        with hold_canvas():
            if picture:
                layer = self.layers["picture"]
                layer.clear()
                layer.put_image_data(self._base, 0, 0)
            c = self.layers["overlay"]
            if add:
                self._draw_markers(c, [((x, y), label) for x, y, label in extra])
                return
            c.clear()
            if self._runs is not None:
                _, x, y = self._layer
                for runs, alpha in zip(self._runs, (MASK_ALPHA, 255), strict=True):
                    if len(runs):
                        c.fill_style = _rgba_css(MASK_COLOR, alpha)
                        c.fill_rects(runs[:, 0] + x, runs[:, 1] + y, runs[:, 2], 1)
            elif self._png is not None:
                _put_png(c, self._png, self._layer[1], self._layer[2])
            self._draw_shapes(c, extra)

    def _draw_shapes(self, c: Canvas, extra=()) -> None:
        (iw, ih), (dw, dh) = self.image_size, self.display_size
        # The text prompt's detections, dashed, under the box prompt they gave.
        detections = self.segmenter.detections
        if detections:
            c.stroke_style = _rgb_css(DETECTION_COLOR)
            c.line_width = 1
            c.set_line_dash([6, 4])
            for x0, y0, x1, y1 in detections:
                c.stroke_rect(x0 * dw / iw, y0 * dh / ih, (x1 - x0) * dw / iw, (y1 - y0) * dh / ih)
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
        points = [*zip(self.segmenter.points, self.segmenter.labels, strict=True)]
        points += [((px, py), label) for px, py, label in extra]
        self._draw_markers(c, points)

    def _draw_markers(self, c: Canvas, points) -> None:
        """One plain fill_circle pair per ``((x, y), label)``: a handful, readable commands."""
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
        # Hidden without candidates; shown (greyed out when there is no choice) otherwise.
        buttons.layout.display = "flex" if options else "none"

    def _update_status(self) -> None:
        seg = self.segmenter
        self.undo_button.disabled = not seg.can_undo
        self.redo_button.disabled = not seg.can_redo
        self.reset_button.disabled = not (seg.points or seg.box is not None)
        self.clear_box_button.disabled = seg.box is None
        labels = [int(v) for v in self.segmenter.labels]
        n_in, n_out = labels.count(1), labels.count(0)
        noun = "point" if len(labels) == 1 else "points"
        parts = [f"<b>{self._busy_note}</b>"] if self._busy_note else []
        parts.append(f"{len(labels)} {noun} ({n_in} include, {n_out} exclude)")
        if self.segmenter.text is not None:
            n = len(self.segmenter.detections)
            found = f"{n} box{'es' if n != 1 else ''} found"
            parts.append(f"text {html.escape(repr(self.segmenter.text))} ({found})")
        elif self.segmenter.box is not None:
            parts.append("box")
        parts.append(f"mask {self._area:.1f}% of the image")
        if self.last_latency_s is not None:
            sam = getattr(self.segmenter, "last_latency_s", None)
            click = f"last click {1000 * self.last_latency_s:.0f} ms"
            if sam is not None:
                click += f" (SAM {1000 * sam:.0f} ms)"
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
