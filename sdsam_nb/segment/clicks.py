"""Click segmentation: the plain, testable state behind the widget (:class:`ClickSegmenter`).

Each click re-runs only the mask decoder, feeding the chosen candidate's low-resolution logits
back as ``mask_input`` as SAM recommends, so a mask depends on the order of the clicks and
choices: :meth:`ClickSegmenter.to_dict` records the actions, :meth:`~ClickSegmenter.from_dict`
replays them to the same mask.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from .. import caching
from ..images import ImageLike, to_rgb
from ..models.detectors import Detector, detect
from ..recording import recorded
from ..validate import check_flag, is_int, is_number, parse_points
from .base import as_segmenter

FORMAT_VERSION = 1
_CORNERS = ("x0", "y0", "x1", "y1")


class Candidate(NamedTuple):
    """One of SAM's answers to the current prompt: an ``HxW bool`` mask and its predicted IoU
    (about 0..1)."""

    mask: np.ndarray
    score: float


@dataclass(frozen=True)
class _State:
    """Everything one step of the history shows; never mutated once made."""

    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None
    packed: np.ndarray | None = None  # np.packbits of the CxHxW bool candidate masks
    scores: tuple[float, ...] = ()  # one per candidate: len(scores) is their number C
    low_res: np.ndarray | None = None  # Cxhxw float32 logits (h = w = 256 for SAM)
    chosen: int = 0
    detections: tuple[tuple[float, float, float, float], ...] = ()  # boxes a text prompt found
    text: str | None = None  # the text prompt that set the box, while it holds


class ClickSegmenter:
    """Segment one picture with point clicks and an optional box, with undo/redo.

    Args:
        predictor: a ``SamPredictor`` from :func:`sdsam_nb.load_sam`, or any model
            :func:`~sdsam_nb.segment.as_segmenter` accepts. Several segmenters may share it:
            each keeps its own embedding (computed once).
        image: the picture (:func:`sdsam_nb.images.to_rgb`); coordinates refer to it.
        multimask: ``"auto"`` (default): 3 candidates for a single point without a box, else 1,
            as SAM's authors advise; ``True``/``False`` force 3/1.
        cache: read and write the disk cache of embeddings (:func:`sdsam_nb.caching.embed`,
            bit-identical to computing); :attr:`embedding_cache` says what happened.

    Every action (:meth:`add_point`, :meth:`add_points`, :meth:`set_box`, :meth:`set_text`,
    :meth:`clear_box`, :meth:`choose`, :meth:`reset`) returns the new ``HxW bool`` mask and can
    be undone. After each prediction the best-scoring candidate is chosen.

    Attributes:
        embedding_cache: ``"hit"`` (from the disk cache), ``"miss"`` (computed and stored) or
            ``"off"`` (not cached: ``cache=False``, the cache off, or a model of unknown
            identity).
        last_latency_s: wall-clock seconds of the last prediction (``None`` before the first).
    """

    def __init__(
        self,
        predictor,
        image: ImageLike,
        *,
        multimask: bool | str = "auto",
        cache: bool = True,
    ):
        segmenter = as_segmenter(predictor)
        if multimask != "auto" and not isinstance(multimask, (bool, np.bool_)):
            raise ValueError(f'multimask must be "auto", True or False, not {multimask!r}')
        check_flag(cache, "cache")
        self._segmenter = segmenter
        self._multimask: bool | str = multimask if multimask == "auto" else bool(multimask)
        self._image = to_rgb(image)
        self._w, self._h = self._image.size

        self._embedding, use = caching.embed(segmenter, np.asarray(self._image), cache=cache)
        self.embedding_cache = "off" if "off" in use else "hit" if use["hit"] else "miss"
        self.last_latency_s: float | None = None

        self._empty = _State()
        self._done: list[tuple[dict, _State]] = []  # (action, state after it)
        self._undone: list[tuple[dict, _State]] = []
        self._unpacked: tuple[np.ndarray, np.ndarray] | None = None  # (packed, unpacked)

    @property
    def image(self) -> Image.Image:
        """The converted ``RGB`` picture the coordinates refer to."""
        return self._image

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of :attr:`image` in pixels."""
        return self._w, self._h

    @property
    def embedding_computations(self) -> int:
        """How many times this segmenter ran the image encoder: 0 (from the cache) or 1."""
        return int(self.embedding_cache != "hit")

    @property
    def embedding_restores(self) -> int:
        """How many times a shared ``SamPredictor`` had this embedding put back (0 elsewhere)."""
        return getattr(self._segmenter, "restores", 0)

    @property
    def _state(self) -> _State:
        return self._done[-1][1] if self._done else self._empty

    @property
    def points(self) -> list[tuple[float, float]]:
        """The clicked points, ``(x, y)`` floats in image pixels, oldest first."""
        return list(self._state.points)

    @property
    def labels(self) -> list[int]:
        """One label per point: ``1`` include, ``0`` exclude."""
        return list(self._state.labels)

    @property
    def box(self) -> tuple[float, float, float, float] | None:
        """The box ``(x0, y0, x1, y1)`` with ``x0 < x1`` and ``y0 < y1``, or ``None``."""
        return self._state.box

    @property
    def detections(self) -> list[tuple[float, float, float, float]]:
        """The boxes the current text prompt found (XYXY image pixels); ``[]`` without one."""
        return list(self._state.detections)

    @property
    def text(self) -> str | None:
        """The text prompt whose box is in effect (``None`` without one, or once replaced)."""
        return self._state.text

    @property
    def candidates(self) -> list[Candidate]:
        """SAM's answers to the current prompt (3 or 1; none without a prompt)."""
        masks = self._masks(self._state)
        return [Candidate(m.copy(), s) for m, s in zip(masks, self._state.scores, strict=True)]

    @property
    def scores(self) -> list[float]:
        """Each candidate's predicted IoU, in :attr:`candidates` order (no masks copied)."""
        return list(self._state.scores)

    @property
    def chosen(self) -> int:
        """Index of the chosen candidate (0 when there are none)."""
        return self._state.chosen

    @property
    def mask(self) -> np.ndarray:
        """The chosen candidate's ``HxW bool`` mask; all False without a prompt."""
        state = self._state
        if not state.scores:
            return np.zeros((self._h, self._w), dtype=bool)
        return self._masks(state)[state.chosen].copy()

    @property
    def logits(self) -> np.ndarray | None:
        """The chosen candidate's low-res logits, ``1x256x256 float32`` for SAM (a
        ``mask_input``); ``None`` without a prompt."""
        state = self._state
        if not state.scores:
            return None
        return state.low_res[state.chosen][None].copy()

    @property
    def can_undo(self) -> bool:
        """Whether :meth:`undo` has an action to take back."""
        return bool(self._done)

    @property
    def can_redo(self) -> bool:
        """Whether :meth:`redo` has an undone action to re-apply."""
        return bool(self._undone)

    def add_point(self, x: float, y: float, positive: bool = True) -> np.ndarray:
        """Add an include (``positive=True``) or exclude click at ``(x, y)`` image pixels,
        ``0 <= x < width``, ``0 <= y < height``."""
        x, y = self._point(x, y)
        if not (isinstance(positive, (bool, np.bool_)) or is_int(positive) and positive in (0, 1)):
            raise ValueError(
                f"positive must be True (include) or False (exclude), not {positive!r}"
            )
        return self._do({"op": "point", "x": x, "y": y, "positive": bool(positive)})

    def add_points(self, points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
        """Add ``[[x, y], ...]`` or ``[[x, y, label], ...]`` clicks (label 1 include, the
        default, or 0 exclude) with **one** prediction and one undo step; without the
        intermediate masks fed back the mask may differ from one-by-one clicks."""
        rows = parse_points(points)
        if not rows:
            raise ValueError("add_points needs at least one point [x, y] or [x, y, label]")
        checked = [
            [*_named(f"points[{k}]", self._point, x, y), label]
            for k, (x, y, label) in enumerate(rows)
        ]
        return self._do({"op": "points", "points": checked})

    def set_box(self, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        """Set (or replace) the box prompt: corners in any order, within ``0..width`` and
        ``0..height``, with a non-zero width and height."""
        box = self._corners(x0, y0, x1, y1)
        if box is None:
            raise ValueError(
                f"box ({x0}, {y0}, {x1}, {y1}) has zero area: drag a box with a width and a height"
            )
        return self._do({"op": "box", **box})

    def set_text(
        self,
        text: str,
        *,
        detector: Detector | None = None,
        box_threshold: float = 0.35,
        text_threshold: float = 0.25,
        combine: str = "best",
    ):
        """Start from a text prompt: ``detector`` (required: ``sdsam_nb.load_grounding_dino()``
        or any :data:`~sdsam_nb.models.detectors.Detector`) finds boxes and the box prompt
        becomes the highest-scoring one (``combine="best"``) or the one enclosing all
        (``"union"``); clicks refine it. A replay uses the recorded boxes, without a detector.

        Returns:
            The boxes found (XYXY image pixels, best first); ``[]`` leaves the segmenter as it
            was.
        """
        if combine not in ("best", "union"):
            raise ValueError(f"combine must be 'best' or 'union', not {combine!r}")
        if detector is None:
            raise ValueError(
                "detector is required with a text prompt: pass "
                "detector=sdsam_nb.load_grounding_dino() (or any detector callable)"
            )
        found, labels, scores, source = detect(
            detector,
            self._image,
            text,
            box_threshold=box_threshold,
            text_threshold=text_threshold,
        )
        if not found:
            return []
        boxes = [tuple(float(v) for v in b) for b in found]
        x0, y0, x1, y1 = zip(*boxes, strict=True)
        corners = boxes[0] if combine == "best" else (min(x0), min(y0), max(x1), max(y1))
        self._do_text(
            {
                "op": "text",
                "text": text,
                "detector": source,
                "box_threshold": float(box_threshold),
                "text_threshold": float(text_threshold),
                "combine": combine,
                "boxes": [list(b) for b in boxes],
                **dict(zip(_CORNERS, corners, strict=True)),
            }
        )
        return boxes

    def clear_box(self) -> np.ndarray:
        """Remove the box prompt (nothing happens without one)."""
        if self._state.box is None:
            return self.mask
        return self._do({"op": "clear_box"})

    def choose(self, i: int) -> np.ndarray:
        """Choose candidate ``i`` (``0 <= i < len(candidates)``); its logits feed the next
        click. Choosing the chosen one does nothing."""
        count = len(self._state.scores)
        if count == 0:
            raise ValueError("choose(i): there are no candidates yet; click a point or set a box")
        if not is_int(i) or not 0 <= i < count:
            raise ValueError(f"choose(i): i must be an integer in 0..{count - 1}, got {i!r}")
        if int(i) == self._state.chosen:
            return self.mask
        return self._do({"op": "choose", "i": int(i)})

    def reset(self) -> np.ndarray:
        """Remove every point, the box and the candidates (undoable)."""
        if self._state is self._empty:
            return self.mask
        return self._do({"op": "reset"})

    def undo(self) -> bool:
        """Step back one action without predicting; ``False`` when there is nothing to undo."""
        if not self._done:
            return False
        self._undone.append(self._done.pop())
        return True

    def redo(self) -> bool:
        """Re-apply the last undone action; ``False`` when there is none."""
        if not self._undone:
            return False
        self._done.append(self._undone.pop())
        return True

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe record of this session, enough to replay it exactly.

        ``actions``: the history behind the current mask (not undone ones, nothing before the
        last reset): ``{"op": "point", "x", "y", "positive"}``, ``{"op": "points", "points":
        [[x, y, label], ...]}``, ``{"op": "box", "x0", "y0", "x1", "y1"}``, ``{"op": "text",
        ...}`` (the box and what found it), ``{"op": "clear_box"}``, ``{"op": "choose", "i"}``.
        ``points``, ``labels``, ``box`` and ``chosen`` describe the current prompt for reading.
        """
        actions = [dict(a) for a, _ in self._done]
        resets = [k for k, a in enumerate(actions) if a["op"] == "reset"]
        if resets:
            actions = actions[resets[-1] + 1 :]
        state = self._state
        return {
            "version": FORMAT_VERSION,
            "image_size": [self._w, self._h],
            "multimask": self._multimask,
            "actions": actions,
            "points": [[x, y] for x, y in state.points],
            "labels": list(state.labels),
            "box": None if state.box is None else list(state.box),
            "chosen": state.chosen,
        }

    @classmethod
    @recorded("ClickSegmenter.from_dict")
    def from_dict(
        cls, predictor, image: ImageLike, d: Mapping[str, Any], *, cache: bool = True
    ) -> ClickSegmenter:
        """Replay a :meth:`to_dict` record on ``image``: the bit-identical mask on the same
        model and device.

        Raises:
            ValueError: ``d`` is malformed, of another version, or made on an image of another
                size (the message gives both sizes).
        """
        if not isinstance(d, Mapping):
            raise ValueError(
                f"d must be a dict from ClickSegmenter.to_dict(), not {type(d).__name__}"
            )
        if d.get("version") != FORMAT_VERSION:
            raise ValueError(f"d has version {d.get('version')!r}; this code reads version 1")
        actions = d.get("actions")
        if not isinstance(actions, Sequence) or isinstance(actions, str):
            raise ValueError("d['actions'] must be a list of actions")
        rgb = to_rgb(image)
        size = d.get("image_size")
        if not isinstance(size, Sequence) or list(size) != list(rgb.size):
            shown = "x".join(map(str, size)) if isinstance(size, list | tuple) else repr(size)
            raise ValueError(
                f"d was recorded on a {shown} image but this image is "
                f"{rgb.width}x{rgb.height}: replay it on the same picture"
            )
        seg = cls(predictor, rgb, multimask=d.get("multimask", "auto"), cache=cache)
        for k, action in enumerate(actions):
            seg._replay(action, f"d['actions'][{k}]")
        return seg

    @classmethod
    @recorded("ClickSegmenter.from_prompts")
    def from_prompts(
        cls,
        predictor,
        image: ImageLike,
        points: Sequence[Sequence[float]] | np.ndarray | None = None,
        box: Sequence[float] | None = None,
        chosen: int | None = None,
        *,
        text: str | None = None,
        detector=None,
        box_threshold: float = 0.35,
        text_threshold: float = 0.25,
        multimask: bool | str = "auto",
        cache: bool = True,
    ) -> ClickSegmenter:
        """Replay prompts given as plain values (e.g. papermill parameters): the box (or the
        ``text`` prompt's best box, :meth:`set_text`) first, then the points in order, then
        candidate ``chosen`` (``None`` keeps the best score).

        Args:
            points: ``[[x, y], ...]`` or ``[[x, y, label], ...]`` (``Nx2``/``Nx3``) in image
                pixels, label 1 include (default) or 0 exclude.
            box: ``[x0, y0, x1, y1]`` in image pixels, or ``None``.

        Raises:
            ValueError: malformed ``points``/``box``/``chosen``, both ``text`` and ``box``, or a
                ``text`` for which nothing was found (the message says what to try).
        """
        rows = parse_points(points)
        if text is not None and box is not None:
            raise ValueError("give text or box, not both: the text prompt sets the box")
        seg = cls(predictor, image, multimask=multimask, cache=cache)
        if text is not None:
            found = seg.set_text(
                text, detector=detector, box_threshold=box_threshold, text_threshold=text_threshold
            )
            if not found:
                raise ValueError(
                    f"text {text!r} found nothing with box_threshold={box_threshold}: lower it "
                    "(e.g. 0.25), name the subject with a short noun phrase, or use points"
                )
        if box is not None:
            if (
                isinstance(box, (str, bytes))
                or not isinstance(box, (Sequence, np.ndarray))
                or len(box) != 4
            ):
                raise ValueError(f"box must be [x0, y0, x1, y1] (4 numbers), got {box!r}")
            _named("box", seg.set_box, *box)
        for k, (x, y, label) in enumerate(rows):
            _named(f"points[{k}]", seg.add_point, x, y, label == 1)
        if chosen is not None:
            if not seg._state.scores:
                raise ValueError("chosen needs points or a box to choose among")
            _named("chosen", seg.choose, chosen)
        return seg

    def _replay(self, action, where: str) -> None:
        ops = {
            "point": lambda a: self.add_point(a["x"], a["y"], a["positive"]),
            "points": lambda a: self.add_points(a["points"]),
            "box": lambda a: self.set_box(a["x0"], a["y0"], a["x1"], a["y1"]),
            "text": lambda a: self._do_text(dict(a)),
            "clear_box": lambda a: self.clear_box(),
            "choose": lambda a: self.choose(a["i"]),
            "reset": lambda a: self.reset(),
        }
        if not isinstance(action, Mapping) or action.get("op") not in ops:
            raise ValueError(f"{where} must be a dict with 'op' one of {list(ops)}: {action!r}")
        try:
            ops[action["op"]](action)
        except KeyError as exc:
            raise ValueError(f"{where} ({action['op']!r}) lacks the key {exc}") from None
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None

    def _point(self, x, y) -> tuple[float, float]:
        return self._coordinate(x, "x", self._w), self._coordinate(y, "y", self._h)

    def _coordinate(self, value, name: str, limit: int, *, end: bool = False) -> float:
        """``value`` as a float in ``[0, limit)`` (``[0, limit]`` for a box corner)."""
        size = f"the image is {self._w}x{self._h} px (width x height)"
        if not is_number(value):
            raise ValueError(f"{name} must be a number of pixels, not {value!r}; {size}")
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"{name}={v} is not a finite number; {size}")
        if not (0 <= v <= limit if end else 0 <= v < limit):
            bound = "<=" if end else "<"
            raise ValueError(
                f"{name}={v:g} is outside the image: need 0 <= {name} {bound} {limit}; {size}"
            )
        return v

    def _corners(self, x0, y0, x1, y1) -> dict[str, float] | None:
        """The box's corners checked and sorted; ``None`` when it has no area."""
        xs = sorted(self._coordinate(v, n, self._w, end=True) for v, n in ((x0, "x0"), (x1, "x1")))
        ys = sorted(self._coordinate(v, n, self._h, end=True) for v, n in ((y0, "y0"), (y1, "y1")))
        if xs[0] == xs[1] or ys[0] == ys[1]:
            return None
        return dict(zip(_CORNERS, (xs[0], ys[0], xs[1], ys[1]), strict=True))

    def _do_text(self, action: dict) -> np.ndarray:
        box = self._corners(*(action[k] for k in _CORNERS))
        if box is None:
            raise ValueError(f"the text prompt's box {[action[k] for k in _CORNERS]} has zero area")
        return self._do({**action, **box})

    def _do(self, action: dict) -> np.ndarray:
        before, op = self._state, action["op"]
        if op == "choose":
            after = replace(before, chosen=action["i"])
        elif op == "reset":
            after = self._empty
        else:
            points, labels, box = before.points, before.labels, before.box
            if op == "point":
                points = (*points, (action["x"], action["y"]))
                labels = (*labels, int(action["positive"]))
            elif op == "points":
                points = (*points, *((float(x), float(y)) for x, y, _ in action["points"]))
                labels = (*labels, *(int(label) for _, _, label in action["points"]))
            elif op in ("box", "text"):
                box = tuple(action[k] for k in _CORNERS)
            else:
                box = None
            after = self._predict(points, labels, box, before)
            if op == "text":
                boxes = tuple(tuple(b) for b in action["boxes"])
                after = replace(after, detections=boxes, text=action["text"])
            elif op in ("point", "points"):  # clicks refine the text prompt's box
                after = replace(after, detections=before.detections, text=before.text)
        self._done.append((action, after))
        self._undone.clear()
        return self.mask

    def _predict(self, points, labels, box, before: _State) -> _State:
        if not points and box is None:
            return self._empty
        multimask = self._multimask
        if multimask == "auto":
            multimask = len(points) == 1 and box is None
        # A writable copy: torch warns about read-only arrays.
        mask_input = before.low_res[before.chosen][None].copy() if before.scores else None
        start = time.perf_counter()
        prediction = self._segmenter.predict(
            self._embedding,
            points=np.array(points, dtype=np.float64) if points else None,
            labels=np.array(labels, dtype=np.int64) if points else None,
            box=np.array(box, dtype=np.float64) if box is not None else None,
            mask_input=mask_input,
            multimask=multimask,
        )
        self.last_latency_s = time.perf_counter() - start
        masks = np.array(prediction.masks, dtype=bool)
        low_res = np.array(prediction.low_res, dtype=np.float32)
        packed = np.packbits(masks, axis=None)
        for array in (masks, low_res, packed):
            array.flags.writeable = False
        scores = tuple(float(s) for s in np.asarray(prediction.scores).ravel())
        self._unpacked = (packed, masks)
        return _State(
            points=tuple(points),
            labels=tuple(labels),
            box=box,
            packed=packed,
            scores=scores,
            low_res=low_res,
            chosen=int(np.argmax(scores)),
        )

    def _masks(self, state: _State) -> np.ndarray:
        """``state``'s ``CxHxW bool`` candidate masks (read-only; the last one unpacked is kept)."""
        count = len(state.scores)
        if count == 0:
            return np.zeros((0, self._h, self._w), dtype=bool)
        if self._unpacked is None or self._unpacked[0] is not state.packed:
            masks = np.unpackbits(state.packed, count=count * self._h * self._w).astype(bool)
            masks = masks.reshape(count, self._h, self._w)
            masks.flags.writeable = False
            self._unpacked = (state.packed, masks)
        return self._unpacked[1]


def _named(name: str, method, *args):
    """``method(*args)``, its ``ValueError`` prefixed with ``name``."""
    try:
        return method(*args)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
