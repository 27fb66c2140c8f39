"""Notebook parameters: one table of what each name must be (:data:`SPEC`), checked at the top
of a notebook, by the command line and by a batch.

papermill's ``-p`` passes a list or a dict as text, so the parameters that take one
(``points``, ``box``, ``clicks``, ``position``...) accept YAML text too. Text is read as YAML
1.2 everywhere the kit reads it (:func:`load_yaml`): ``010`` is 10, ``1:00`` and ``yes`` stay
text.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from ..validate import is_finite, is_int, is_points, short_repr

# What one YAML or JSON value may hold (a manifest, a -f file, a parameter): nested deeper than
# MAX_DEPTH, or more than MAX_NODES values once aliases are followed (a 1 KB alias bomb stands
# for billions), is refused before anything walks it.
MAX_DEPTH = 32
MAX_NODES = 1_000_000


def load_yaml(text: str, *, name: str = "value") -> Any:
    """``text`` read as YAML 1.2 (ruamel.yaml's safe loader): plain data only.

    Raises:
        ValueError: one line naming ``name``: not YAML, or beyond :func:`check_plain`'s limits.
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
    """Check that ``value`` (loaded YAML or JSON) is nested at most :data:`MAX_DEPTH` deep and
    holds at most :data:`MAX_NODES` values, a shared (aliased) value counted each time it is
    reached; walks without recursion and stops at the first limit crossed.

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
    """What a notebook parameter must be: ``check`` says whether a value is acceptable,
    ``what`` says it in words for the error (or makes the words when called), ``structured``
    marks lists / dicts whose text (papermill's ``-p``) is parsed as YAML."""

    check: Callable[[Any], bool]
    what: str | Callable[[], str]
    structured: bool = False

    def words(self) -> str:
        """What the parameter must be, in words."""
        return self.what() if callable(self.what) else self.what


def _choices(name: str) -> tuple[str, ...]:
    """The names parameter ``name`` chooses among, read from the module that acts on them when
    such a parameter is first checked: those modules import torch or diffusers, which the
    command line does not need to check its parameters before its kernel runs them."""
    if name == "dtype":
        from ..models.devices import DTYPES as names
    elif name == "fast":
        from ..models.fast import FAST as names
    elif name == "scheduler":
        from ..models.schedulers import SCHEDULERS as names
    elif name == "reframe_position":
        from ..background.reframe import POSITIONS as names
    elif name == "text_method":
        from ..segment.text import TEXT_METHODS as names
    elif name == "relight":
        from ..models.iclight import MODES as names
    else:  # "light"
        from ..background.relight import LIGHTS as names
    return tuple(names)


def _in01(value) -> bool:
    return is_finite(value) and 0 <= value <= 1


def _pair(value, check) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(map(check, value))


def _one_of(name: str, none: str | None = None) -> Param:
    """Parameter ``name``: one of its :func:`_choices`; ``None`` too when ``none`` says what
    ``None`` means."""

    def check(v) -> bool:
        return (none is not None and v is None) or (isinstance(v, str) and v in _choices(name))

    def what() -> str:
        listed = "one of " + ", ".join(repr(n) for n in _choices(name))
        return listed if none is None else f"None ({none}) or {listed}"

    return Param(check, what)


_FLAG = Param(lambda v: isinstance(v, bool), "True or False")
_TEXT = Param(lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string")
_TEXT_OR_NONE = Param(lambda v: v is None or isinstance(v, str), "a string or None")
_SIDE = Param(lambda v: is_int(v) and v >= 64 and v % 8 == 0, "a multiple of 8, >= 64")
_FRACTION = Param(_in01, "a number from 0 to 1")
_COUNT = Param(lambda v: is_int(v) and v >= 0, "an integer >= 0")
_PIXELS = Param(lambda v: is_int(v) and v >= 0, "an integer >= 0 (pixels)")
_POSITIVE = Param(lambda v: is_finite(v) and v > 0, "a number > 0")

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
    # the CPU's automatic choice before the dtype was a parameter (a replay takes a run's own
    # dtype from its record where it has one: runs.chain.replay)
    "dtype": "float32",
}

SPEC: dict[str, Param] = {
    # generation
    "sd_model": _TEXT,
    "dtype": _one_of("dtype", "the automatic choice"),  # models.devices.pick_dtype
    "inpaint_model": _TEXT_OR_NONE,
    "fast": _one_of("fast", "off"),  # load_sd's few-step mode (docs/models.md)
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
    "reframe_scale": _POSITIVE,
    "reframe_position": Param(
        lambda v: v in _choices("reframe_position") if isinstance(v, str) else _pair(v, _in01),
        lambda: _one_of("reframe_position").words() + " or [x, y] fractions in 0..1",
        True,
    ),
    "subject_prompt": _TEXT,
    "subject_negative": _TEXT_OR_NONE,
    "background_prompt": _TEXT,
    "background_negative": _TEXT_OR_NONE,
    "seed": _COUNT,
    # None: the sampler's default (25, or what the few-step mode needs)
    "steps": Param(lambda v: v is None or (is_int(v) and v >= 1), "an integer >= 1"),
    "scheduler": _one_of("scheduler", "the model's own"),
    # None: the sampler's default (7.5, or what the few-step mode needs)
    "guidance": Param(lambda v: v is None or (is_finite(v) and v >= 0), "a number >= 0"),
    "strength": Param(lambda v: is_finite(v) and 0 < v <= 1, "a number in (0, 1]"),
    "n_variations": Param(lambda v: is_int(v) and 1 <= v <= 16, "an integer from 1 to 16"),
    "pick": _COUNT,
    "width": _SIDE,
    "height": _SIDE,
    "size": _SIDE,
    # masks
    "sam_model": _TEXT,
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
    "text_prompt": _TEXT_OR_NONE,
    "text_method": _one_of("text_method"),
    "detector_model": _TEXT,
    "box_threshold": _FRACTION,
    "text_threshold": _FRACTION,
    "fill_holes": _FLAG,
    "min_island": _PIXELS,
    # backgrounds
    "grow": _PIXELS,
    "feather": _PIXELS,
    "keep_subject": _FLAG,
    "scale": _POSITIVE,
    "position": Param(
        lambda v: v in ("center", "bottom") or _pair(v, is_finite),
        "'center', 'bottom' or [x, y]",
        True,
    ),
    "harmonize": _FLAG,
    # relighting the subject with IC-Light (notebooks 04, 00; docs/api.md)
    "relight": _one_of("relight", "off"),
    "relight_prompt": Param(lambda v: isinstance(v, str), "a string (the light)"),
    "light": _one_of("light"),
    # inputs and the run
    "image_path": _TEXT_OR_NONE,
    "mask_path": _TEXT_OR_NONE,
    "run_dir": _TEXT_OR_NONE,
    "output_root": _TEXT_OR_NONE,
    "use_drive": _FLAG,
    "progress": _FLAG,
    # the disk caches of embeddings and generated pictures (sdsam_nb.caching)
    "cache": _FLAG,
}


def unknown_name(name: Any, known: Iterable[str] = SPEC, what: str = "unknown parameter"):
    """The ``ValueError`` for ``name``, not one of ``known``, naming the close matches."""
    close = difflib.get_close_matches(str(name), list(known), n=3)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    return ValueError(f"{what} {short_repr(name)}{hint}")


def check_params(**params) -> dict:
    """Check notebook parameters by name; return them, the YAML text of a list / dict
    parameter parsed (papermill's ``-p`` passes text).

    Raises:
        ValueError: an unknown name (with the close matches), text that is not YAML, or the
            first parameter that is not what it must be, e.g.
            ``parameter steps must be an integer >= 1, got 'ten' (str)``.
    """
    out = {}
    for name, value in params.items():
        if name not in SPEC:
            raise unknown_name(name)
        param, parsed = SPEC[name], value
        hint = f"; with papermill give it as YAML: -y '{name}: ...'"
        if param.structured and isinstance(value, str):
            try:
                parsed = load_yaml(value, name=f"parameter {name}")
            except ValueError as exc:
                raise ValueError(f"{exc}; it must be {param.words()}{hint}") from None
        if not param.check(parsed):
            hint = hint if isinstance(value, str) and param.structured else ""
            raise ValueError(
                f"parameter {name} must be {param.words()}, got {short_repr(value)} "
                f"({type(value).__name__}){hint}"
            )
        out[name] = parsed
    return out
