"""Notebook parameters: one table of what each name must be, checked at the top of a notebook.

papermill's ``-p NAME VALUE`` passes a list, a dict or a mapping as text (only numbers,
``True``/``False`` and ``None`` are converted), so parameters that take lists or dicts
(``points``, ``box``, ``clicks``, ``position``) accept YAML text too, as ``sdsam-nb run -p``
and papermill's own ``-y`` / ``-f`` do.

Text is read as YAML 1.2 (:func:`load_yaml`), everywhere the kit reads it (``-p``, ``-f``,
manifests, a list given as text): ``010`` is 10, not 8 (YAML 1.1's octal), ``1:00`` stays the
text ``"1:00"`` (not 60, base 60), ``yes`` stays ``"yes"``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from ..background.reframe import POSITIONS
from ..background.relight import LIGHTS
from ..models import SCHEDULERS
from ..models.devices import DTYPES
from ..models.fast import FAST
from ..models.iclight import MODES as RELIGHT_MODES
from ..segment.text import TEXT_METHODS
from ..validate import is_finite, is_int, is_points, short_repr

# What one YAML or JSON value may hold before the kit refuses it (a manifest, a -f file, a
# parameter): nested deeper than MAX_DEPTH, or more than MAX_NODES values once aliases are
# followed (a 1 KB alias bomb stands for billions), is refused before anything walks it.
MAX_DEPTH = 32
MAX_NODES = 1_000_000


def load_yaml(text: str, *, name: str = "value") -> Any:
    """``text`` read as YAML 1.2 (ruamel.yaml's safe loader): plain data only.

    Raises:
        ValueError: one line naming ``name``: not YAML, nested deeper than
            :data:`MAX_DEPTH`, or more than :data:`MAX_NODES` values (aliases followed).
    """
    try:
        value = YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        line = (str(exc).strip().splitlines() or ["not YAML"])[0].rstrip(":")
        raise ValueError(f"{name} is not YAML ({line})") from None
    except RecursionError:
        raise ValueError(f"{name} is nested too deeply (at most {MAX_DEPTH} levels)") from None
    check_plain(value, name=name)
    return value


def check_plain(value: Any, *, name: str = "value") -> None:
    """Check that ``value`` (loaded YAML or JSON) is nested at most :data:`MAX_DEPTH` deep
    and holds at most :data:`MAX_NODES` values, counting a shared (aliased) value each time
    it is reached; walks without recursion and stops at the first limit crossed.

    Raises:
        ValueError: one line naming ``name`` and the limit.
    """
    stack = [(value, 0)]
    nodes = 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise ValueError(
                f"{name} holds more than {MAX_NODES:,} values (a YAML alias repeated many "
                "times?): write the values out, or split it"
            )
        if isinstance(item, (dict, list, tuple)):
            if depth >= MAX_DEPTH:
                raise ValueError(f"{name} is nested too deeply (at most {MAX_DEPTH} levels)")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


@dataclass(frozen=True)
class Param:
    """What a notebook parameter must be.

    ``check`` says whether a value is acceptable, ``what`` says it in words for the error,
    ``structured`` marks lists / dicts whose text form (from papermill's ``-p``) is parsed
    as YAML.
    """

    check: Callable[[Any], bool]
    what: str
    structured: bool = False


def _int_at_least(low: int, unit: str = "") -> Param:
    return Param(lambda v: is_int(v) and v >= low, f"an integer >= {low}{unit}")


def _flag() -> Param:
    return Param(lambda v: isinstance(v, bool), "True or False")


def _text() -> Param:
    return Param(lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string")


def _text_or_none() -> Param:
    return Param(lambda v: v is None or isinstance(v, str), "a string or None")


def _multiple_of_8() -> Param:
    return Param(lambda v: is_int(v) and v >= 64 and v % 8 == 0, "a multiple of 8, >= 64")


def _fraction() -> Param:
    return Param(lambda v: is_finite(v) and 0 <= v <= 1, "a number from 0 to 1")


# What a parameter added after runs were recorded replays as in those runs: the value that
# gives the behaviour the notebooks had before it existed (its default may now differ).
BEFORE_IT_EXISTED: dict[str, Any] = {
    "text_method": "grounding_dino",
    "edge": "feather",
    "shadow": False,
    "reframe_size": None,
    "reframe_aspect": "",
    # runs recorded before the disk caches computed every embedding and picture
    "cache": False,
    # runs recorded before the dtype was: the CPU's automatic choice then (a replay takes a
    # run's own dtype from its record where it has one: runs.chain.replay)
    "dtype": "float32",
}


def _pair(value, check) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(map(check, value))


def _in01(value) -> bool:
    return is_finite(value) and 0 <= value <= 1


SPEC: dict[str, Param] = {
    # generation
    "sd_model": _text(),
    # the dtype SD is loaded in; None: the automatic choice (models.devices.pick_dtype)
    "dtype": Param(
        lambda v: v is None or v in DTYPES,
        "None (the automatic choice) or one of " + ", ".join(repr(n) for n in DTYPES),
    ),
    "inpaint_model": _text_or_none(),
    # the few-step mode of load_sd (docs/models.md): an adapter, its sampler, steps, guidance
    "fast": Param(
        lambda v: v is None or (isinstance(v, str) and v in FAST),
        "None (off) or one of " + ", ".join(repr(n) for n in FAST),
    ),
    # the subject's edge where it is pasted (notebooks 03, 04) and a contact shadow (04)
    "edge": Param(lambda v: v in ("feather", "matte"), "'feather' or 'matte'"),
    "shadow": Param(
        lambda v: isinstance(v, (bool, dict)),
        "True, False or a dict of contact_shadow options (direction, opacity, ...)",
        True,
    ),
    # reframing (notebook 03): a new canvas for the subject
    "reframe_size": Param(
        lambda v: v is None or _pair(v, lambda x: is_int(x) and x >= 64),
        "None or [width, height], each >= 64",
        True,
    ),
    "reframe_aspect": Param(
        lambda v: v is None or isinstance(v, str) or (is_finite(v) and v > 0),
        "'' / None (no aspect), 'W:H' such as '16:9', or a number > 0",
    ),
    "reframe_scale": Param(lambda v: is_finite(v) and v > 0, "a number > 0"),
    "reframe_position": Param(
        lambda v: v in POSITIONS if isinstance(v, str) else _pair(v, lambda x: _in01(x)),
        "one of " + ", ".join(repr(n) for n in POSITIONS) + " or [x, y] fractions in 0..1",
        True,
    ),
    "subject_prompt": _text(),
    "subject_negative": _text_or_none(),
    "background_prompt": _text(),
    "background_negative": _text_or_none(),
    "seed": _int_at_least(0),
    # None: the sampler's default (25, or what the few-step mode needs)
    "steps": Param(lambda v: v is None or (is_int(v) and v >= 1), "an integer >= 1"),
    "scheduler": Param(
        lambda v: v is None or v in SCHEDULERS,
        "None (the model's own) or one of " + ", ".join(repr(n) for n in SCHEDULERS),
    ),
    # None: the sampler's default (7.5, or what the few-step mode needs)
    "guidance": Param(lambda v: v is None or (is_finite(v) and v >= 0), "a number >= 0"),
    "strength": Param(lambda v: is_finite(v) and 0 < v <= 1, "a number in (0, 1]"),
    "n_variations": Param(lambda v: is_int(v) and 1 <= v <= 16, "an integer from 1 to 16"),
    "pick": _int_at_least(0),
    "width": _multiple_of_8(),
    "height": _multiple_of_8(),
    "size": _multiple_of_8(),
    # masks
    "sam_model": _text(),
    "points": Param(is_points, "a list of [x, y] or [x, y, label] (label 1 or 0)", True),
    "box": Param(
        lambda v: (
            v is None or (isinstance(v, (list, tuple)) and len(v) == 4 and all(map(is_finite, v)))
        ),
        "None or [x0, y0, x1, y1]",
        True,
    ),
    "candidate": Param(lambda v: v is None or (is_int(v) and v >= 0), "None or an integer >= 0"),
    "clicks": Param(
        lambda v: v is None or isinstance(v, dict), "None or a dict from to_dict()", True
    ),
    "text_prompt": _text_or_none(),
    "text_method": Param(
        lambda v: isinstance(v, str) and v in TEXT_METHODS,
        "one of " + ", ".join(repr(n) for n in TEXT_METHODS),
    ),
    "detector_model": _text(),
    "box_threshold": _fraction(),
    "text_threshold": _fraction(),
    "fill_holes": _flag(),
    "min_island": _int_at_least(0, " (pixels)"),
    # backgrounds
    "grow": _int_at_least(0, " (pixels)"),
    "feather": _int_at_least(0, " (pixels)"),
    "keep_subject": _flag(),
    "scale": Param(lambda v: is_finite(v) and v > 0, "a number > 0"),
    "position": Param(
        lambda v: (
            v in ("center", "bottom")
            or (isinstance(v, (list, tuple)) and len(v) == 2 and all(map(is_finite, v)))
        ),
        "'center', 'bottom' or [x, y]",
        True,
    ),
    "harmonize": _flag(),
    # relighting the subject with IC-Light (notebooks 04, 00; docs/api.md)
    "relight": Param(
        lambda v: v is None or (isinstance(v, str) and v in RELIGHT_MODES),
        "None (off) or one of " + ", ".join(repr(n) for n in RELIGHT_MODES),
    ),
    "relight_prompt": Param(lambda v: isinstance(v, str), "a string (the light)"),
    "light": Param(
        lambda v: isinstance(v, str) and v in LIGHTS,
        "one of " + ", ".join(repr(n) for n in LIGHTS),
    ),
    # inputs and the run
    "image_path": _text_or_none(),
    "mask_path": _text_or_none(),
    "run_dir": _text_or_none(),
    "output_root": _text_or_none(),
    "use_drive": _flag(),
    "progress": _flag(),
    # the disk caches of embeddings and generated pictures (sdsam_nb.caching)
    "cache": _flag(),
}


def _unknown(name: str) -> ValueError:
    close = difflib.get_close_matches(name, SPEC, n=3)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    return ValueError(f"unknown parameter {short_repr(name)}{hint}")


def parse_text(name: str, value: Any) -> Any:
    """``value``, with the YAML text of a list / dict parameter parsed (papermill's ``-p``).

    Other parameters and values that are not strings come back unchanged.
    """
    if name not in SPEC:
        raise _unknown(name)
    if not (SPEC[name].structured and isinstance(value, str)):
        return value
    try:
        return load_yaml(value, name=f"parameter {name}")
    except ValueError as exc:
        raise ValueError(
            f"{exc}; it must be {SPEC[name].what}: with papermill give it as YAML: "
            f"-y '{name}: [...]'"
        ) from None


def check_params(**params) -> dict:
    """Check notebook parameters by name; return them, list / dict text parsed as YAML.

    Raises:
        ValueError: an unknown name (with the close matches), or the first parameter that
            is not what it must be, e.g.
            ``parameter steps must be an integer >= 1, got 'ten' (str)``.
    """
    out = {}
    for name, value in params.items():
        parsed = parse_text(name, value)
        param = SPEC[name]
        if not param.check(parsed):
            hint = ""
            if isinstance(value, str) and param.structured:
                hint = f"; with papermill give it as YAML: -y '{name}: ...'"
            raise ValueError(
                f"parameter {name} must be {param.what}, got {short_repr(value)} "
                f"({type(value).__name__}){hint}"
            )
        out[name] = parsed
    return out
