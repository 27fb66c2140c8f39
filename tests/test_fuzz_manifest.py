"""Fuzzing batch manifests and items (hypothesis): what a user hands ``sdsam-nb batch``.

The property everywhere: a :class:`~sdsam_nb.batch.Manifest` (or a checked item, a plan, an
item's spec), or a ``ValueError`` / ``FileNotFoundError`` whose message is one line that a user
can read — never another exception type, never a traceback. The files are CSV, YAML and JSON
Lines, as text or as any bytes (bad UTF-8, cells over csv's limit, deep nesting, YAML
aliases, ids that cannot name a folder); the items are dicts of the notebook parameters
(:data:`sdsam_nb.runs.SPEC`) and the item keys with any kind of value.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from sdsam_nb.batch import check_item, plan_item, read_manifest
from sdsam_nb.batch.item import item_spec
from sdsam_nb.batch.manifest import ITEM_KEYS, MAX_ITEMS, Manifest
from sdsam_nb.runs import SPEC

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REFUSED = (ValueError, FileNotFoundError)
KEYS = sorted([*SPEC, *ITEM_KEYS])
SUFFIXES = [".csv", ".yaml", ".yml", ".jsonl", ".ndjson"]

# paths an item may name, relative to the manifest's folder (which holds x.png, a folder d)
PATHS = st.one_of(
    st.sampled_from(
        [
            "x.png",
            "d",
            "nope.png",
            "",
            " ",
            "~nobody-here/x.png",
            "~/x.png",
            "../x.png",
            "/dev/null",
            "a" * 5000,
            "x.png\x00",
            "auto",
            "d/../x.png",
            "\u00e9.png",
        ]
    ),  # fmt: skip
    st.text(max_size=30),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["010", "1:00", "yes", "[[1, 2, 1]]", "{a: 1}", "&a [*a]", "16:9", "auto"]),
    PATHS,
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
ITEMS = st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=12)), VALUES, max_size=6)
IDS = st.one_of(
    st.none(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.booleans(),
    st.text(max_size=12),
    st.sampled_from(
        ["index.csv", ".hidden", "-x", "a/b", "a.incomplete-1", "x" * 101, " a", "ok", "ok"]
    ),
    st.lists(st.integers(), max_size=3),
)


def _one_line(exc: BaseException) -> None:
    """What every refusal must be: an allowed type, one line, not empty, not huge."""
    assert isinstance(exc, REFUSED), f"{type(exc).__name__}: {exc}"
    text = str(exc)
    assert text.strip() and "\n" not in text and "\r" not in text, repr(text)
    assert len(text) < 1000, f"{len(text)} characters: {text[:200]}..."


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """The manifests' folder: a small picture ``x.png`` and a folder ``d`` (module-scoped:
    hypothesis runs many examples in one test function)."""
    folder = tmp_path_factory.mktemp("fuzz-manifest")
    Image.new("RGB", (64, 48), (200, 30, 30)).save(folder / "x.png")
    (folder / "d").mkdir()
    return folder


def _read(folder: Path, name: str, data: bytes) -> Manifest | None:
    """``read_manifest`` of ``data`` written as ``folder/name``: the manifest, or ``None``
    after checking the refusal."""
    path = folder / name
    path.write_bytes(data)
    try:
        manifest = read_manifest(path)
    except BaseException as exc:  # noqa: BLE001  (the property is about every exception)
        _one_line(exc)
        return None
    assert 1 <= len(manifest.items) <= MAX_ITEMS
    ids = [item["id"] for item in manifest.items]
    assert all(isinstance(i, str) and i for i in ids) and len(set(ids)) == len(ids)
    assert all(isinstance(item, dict) for item in manifest.items)
    return manifest


# ---------------------------------------------------------------------- the files


def _csv_cell(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, allow_nan=True)
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n\r') else text


@st.composite
def csv_text(draw) -> str:
    keys = draw(st.lists(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), max_size=5))
    rows = draw(st.lists(st.lists(VALUES, min_size=0, max_size=len(keys) + 1), max_size=4))
    lines = [",".join(_csv_cell(k) for k in keys)]
    lines += [",".join(_csv_cell(v) for v in row) for row in rows]
    if draw(st.booleans()):  # a cell over csv's 131,072 characters, or an unclosed quote
        lines.append(draw(st.sampled_from(['a,"' + "x" * 140_000, 'a,"open', "x" * 140_000])))
    return "\n".join(lines) + draw(st.sampled_from(["", "\n", "\r\n"]))


@st.composite
def yaml_text(draw) -> str:
    kind = draw(st.sampled_from(["items", "deep", "alias", "bomb", "scalar", "json"]))
    if kind == "items":
        items = draw(st.lists(ITEMS, max_size=4))
        return "".join("- " + json.dumps(item, allow_nan=True) + "\n" for item in items)
    if kind == "deep":
        n = draw(st.integers(1, 3000))
        return "- points: " + "[" * n + "]" * n + "\n"
    if kind == "alias":
        return "- &a {id: a, points: [*a]}\n" if draw(st.booleans()) else "- &a [*a]\n"
    if kind == "bomb":
        levels = ["  l0: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
        levels += [f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 8)]
        return "- id: a\n" + "\n".join(levels) + "\n  points: *l7\n"
    if kind == "scalar":
        return draw(st.sampled_from(["", "~", "3", "a: 1", "[1, 2]", "- 1\n- [2]\n", "{}"]))
    return json.dumps(draw(st.lists(ITEMS, max_size=3)), allow_nan=True)


@st.composite
def jsonl_text(draw) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["item", "value", "deep", "blank", "junk"]))
        if kind == "item":
            lines.append(json.dumps(draw(ITEMS), allow_nan=True))
        elif kind == "value":
            lines.append(json.dumps(draw(VALUES), allow_nan=True))
        elif kind == "deep":
            n = draw(st.integers(1, 5000))
            lines.append('{"points": ' + "[" * n + "]" * n + "}")
        elif kind == "blank":
            lines.append(draw(st.sampled_from(["", "  ", "\t"])))
        else:
            lines.append(draw(st.sampled_from(["{", "nul\x00", "1" * 5000, "{'a': 1}", "[1,]"])))
    return "\n".join(lines)


TEXTS = {".csv": csv_text(), ".yaml": yaml_text(), ".yml": yaml_text()}
TEXTS.update({".jsonl": jsonl_text(), ".ndjson": jsonl_text()})


@FUZZ
@given(data=st.data())
def test_any_manifest_text_is_read_or_refused_in_one_line(folder, data):
    suffix = data.draw(st.sampled_from(SUFFIXES))
    text = data.draw(TEXTS[suffix])
    encoding = data.draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"]))
    raw = text.encode(encoding, errors="replace")
    _read(folder, "items" + suffix, raw)


@FUZZ
@given(suffix=st.sampled_from(SUFFIXES), raw=st.binary(max_size=300))
def test_any_manifest_bytes_are_read_or_refused_in_one_line(folder, suffix, raw):
    _read(folder, "items" + suffix, raw)


@FUZZ
@given(st.lists(st.one_of(ITEMS, VALUES), max_size=4), st.lists(IDS, max_size=4))
def test_any_list_of_items_is_read_or_refused_in_one_line(items, ids):
    for item, rid in zip(items, ids, strict=False):
        if isinstance(item, dict):
            item["id"] = rid
    try:
        manifest = read_manifest(items)
    except BaseException as exc:  # noqa: BLE001
        _one_line(exc)
        return
    assert [i["id"] for i in manifest.items] == [str(i["id"]) for i in manifest.items]


# ---------------------------------------------------------------------- the items


def _item_strategy():
    keyed = st.fixed_dictionaries(
        {}, optional={key: VALUES for key in KEYS} | {"image": PATHS, "mask": PATHS}
    )
    return st.one_of(keyed, ITEMS)


@FUZZ
@given(item=_item_strategy(), defaults=_item_strategy())
def test_any_item_is_checked_planned_or_refused_in_one_line(folder, item, defaults):
    item = {**item, "id": "a"}
    try:
        checked = check_item(item)
    except BaseException as exc:  # noqa: BLE001
        _one_line(exc)
    else:
        assert set(checked) == set(item)
    try:
        defaults = check_item(defaults, defaults=True)
    except BaseException as exc:  # noqa: BLE001
        _one_line(exc)
        defaults = {}
    try:
        plan = plan_item(item, defaults, folder)
    except BaseException as exc:  # noqa: BLE001
        _one_line(exc)
    else:
        assert plan.id == "a" and plan.notebooks
        assert plan.image is None or plan.image == (folder / "x.png").resolve()
    # what resume compares: made for any item, before anything runs (JSON, the files' hashes)
    spec = item_spec(item, defaults, folder)
    assert json.loads(json.dumps(spec)) == spec or _has_nan(spec)
    for name, sha in spec["sha256"].items():
        assert name in ("image", "mask") and (sha is None or len(sha) == 64)


def _has_nan(value) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, dict):
        return any(_has_nan(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_nan(v) for v in value)
    return False


@pytest.mark.parametrize("name", ["items.csv", "items.yaml", "items.jsonl"])
def test_a_manifest_that_is_a_folder_or_a_link_to_nothing_is_refused(tmp_path, name):
    (tmp_path / name).mkdir()  # a folder named like a manifest: read as a folder of pictures
    with pytest.raises(FileNotFoundError, match="has no prompt.txt"):
        read_manifest(tmp_path / name)
    (tmp_path / ("dangling" + name)).symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="^manifest: no file or folder"):
        read_manifest(tmp_path / ("dangling" + name))
