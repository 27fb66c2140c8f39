"""Input checks, written once: the API's arguments and the notebooks' parameters
(:mod:`sdsam_nb.runs.params`) use the same functions, so a value is accepted or refused the
same way everywhere, with a ``ValueError`` that names the argument.
"""

from __future__ import annotations

import math
import numbers
import reprlib
from collections.abc import Sequence
from typing import Any

import numpy as np

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60


def one_line(exc: BaseException) -> str:
    """``"TypeName: message"``, first line only; papermill's cell errors as the cell's own."""
    name, value = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    text = f"{name}: {value}" if name else f"{type(exc).__name__}: {exc}"
    return (text.strip().splitlines() or [type(exc).__name__])[0]


def short_repr(value: Any) -> str:
    """``repr(value)`` cut to about 60 characters a part, for error messages: a message
    stays one readable line whatever a user passed (a 5,000-character string, a huge list)."""
    try:
        return _REPR.repr(value)
    except ValueError:  # an integer of thousands of digits
        return f"an integer of {value.bit_length()} bits"


def is_int(value) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_number(value) -> bool:
    """A real number (Python or numpy), not a bool; may be NaN or infinite."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def is_finite(value) -> bool:
    """A finite real number, not a bool."""
    return is_number(value) and math.isfinite(value)


def check_int(value, name: str, *, low: int, multiple: int = 1) -> int:
    """``value`` as an ``int >= low`` and a multiple of ``multiple``."""
    if not is_int(value):
        raise ValueError(f"{name} must be an integer, not {short_repr(value)}")
    value = int(value)
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if value % multiple:
        raise ValueError(
            f"{name}={value} must be a multiple of {multiple} "
            f"(e.g. {value // multiple * multiple or multiple})"
        )
    return value


def check_number(
    value, name: str, *, low: float, high: float | None = None, open_low: bool = False
) -> float:
    """``value`` as a finite float with ``low <= value`` (``<`` with ``open_low``) and
    ``value <= high``."""
    if not is_number(value):
        raise ValueError(f"{name} must be a number, not {short_repr(value)}")
    value = float(value)
    bad = not math.isfinite(value) or value < low or (open_low and value == low)
    if bad or (high is not None and value > high):
        lower = f"> {low:g}" if open_low else f">= {low:g}"
        upper = f" and <= {high:g}" if high is not None else ""
        raise ValueError(f"{name} must be {lower}{upper}, got {short_repr(value)}")
    return value


def check_pixels(value, name: str) -> float:
    """``value`` as a finite number of pixels (any sign): offsets, radii before clamping."""
    if not is_number(value):
        raise ValueError(f"{name} must be a number of pixels, not {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of pixels, got {value}")
    return value


def check_fraction(value, name: str) -> float:
    """``value`` as a float in 0..1."""
    if not is_number(value):
        raise ValueError(f"{name} must be a number between 0 and 1, not {short_repr(value)}")
    if not (0.0 <= float(value) <= 1.0):  # also rejects NaN
        raise ValueError(f"{name} must be between 0 and 1, got {short_repr(value)}")
    return float(value)


POINTS_HINT = "points must be a list of [x, y] or [x, y, label] (label 1 include, 0 exclude)"


def parse_points(points) -> list[tuple[Any, Any, int]]:
    """``points`` (``[[x, y], ...]``, ``[[x, y, label], ...]`` or an ``Nx2`` / ``Nx3`` array)
    as ``(x, y, label)`` rows, label 1 (include, the default) or 0 (exclude); ``None`` is no
    point. The coordinates are checked where they are used (against the picture's size)."""
    if points is None:
        return []
    if isinstance(points, np.ndarray):
        if points.size == 0:
            return []
        if points.ndim != 2 or points.shape[1] not in (2, 3):
            raise ValueError(f"{POINTS_HINT}; got an array of shape {points.shape}")
        points = points.tolist()
    if isinstance(points, (str, bytes)) or not isinstance(points, Sequence):
        raise ValueError(f"{POINTS_HINT}; got {short_repr(points)}")
    rows = []
    for k, row in enumerate(points):
        if isinstance(row, (str, bytes)) or not isinstance(row, (Sequence, np.ndarray)):
            extra = " (for one point write [[x, y]])" if is_number(row) else ""
            raise ValueError(f"{POINTS_HINT}{extra}; points[{k}] is {short_repr(row)}")
        if len(row) not in (2, 3):
            raise ValueError(
                f"{POINTS_HINT}; points[{k}] has {len(row)} values: {short_repr(list(row))}"
            )
        label = row[2] if len(row) == 3 else 1
        if isinstance(label, (bool, np.bool_)):
            label = int(label)
        if not isinstance(label, numbers.Real) or label not in (0, 1):
            raise ValueError(
                f"points[{k}]: label must be 1 (include) or 0 (exclude), got {short_repr(label)}"
            )
        rows.append((row[0], row[1], int(label)))
    return rows


def is_points(value) -> bool:
    """Points :func:`parse_points` accepts, with finite coordinates."""
    try:
        rows = parse_points(value)
    except ValueError:
        return False
    return value is not None and all(is_finite(x) and is_finite(y) for x, y, _ in rows)


def check_flag(value, name: str) -> bool:
    """``value`` as a bool: ``True`` or ``False`` (numpy's too), nothing else."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, not {short_repr(value)}")
    return bool(value)


def check_text_or_none(value, name: str) -> str | None:
    """``value`` as ``None`` or a non-empty string (a revision, a variant, a file name)."""
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ValueError(f"{name} must be a non-empty string or None, not {short_repr(value)}")
    return value
