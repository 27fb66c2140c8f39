"""The README and the pages under docs/: their Python examples run as written, and what they
point at exists.

The examples run on the tiny models with quick settings: only model ids and the sizes and step
counts that make the tiny models slow are substituted; everything else (names, arguments, the
order of calls) is the pages' own text. The README's short example runs alone; docs/api.md's
run in order in one namespace, as a reader runs them.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
API = DOCS / "api.md"  # the Python API's examples
DETECTOR = 'sdsam_nb.load_grounding_dino("tiny")'
QUICK = [
    ("sdsam_nb.load_sd()", 'sdsam_nb.load_sd("tiny", progress=False)'),
    ('sdsam_nb.load_sam("vit_b")', 'sdsam_nb.load_sam("tiny")'),
    ("seed=0, n=4)", "seed=0, n=2, steps=2)"),
    ("steps=25,", "steps=2,"),
    ("size=512,", "size=128,"),
    ("work_size=512,", "work_size=128,"),
    ("like=subject, seed=0)", "like=subject, seed=0, steps=2, size=128)"),
    # the tiny detector's random scores: keep every box so that the text prompt finds one
    ("sdsam_nb.load_grounding_dino()", DETECTOR),
    ('"the armchair"', '"the armchair", box_threshold=0.0'),
]


def pages() -> list[Path]:
    """The README and every page under docs/."""
    return [README, *sorted(DOCS.glob("*.md"))]


def python_blocks(page: Path = README) -> list[str]:
    """A page's Python examples, less the notebook cells it quotes (``# notebook ...``: they run
    in the notebooks, which tests/test_notebooks.py executes and checks for them)."""
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.S)
    return [b for b in blocks if not b.startswith("# notebook ")]


def test_the_notebook_cells_the_readme_quotes_are_the_notebooks_own():
    import nbformat

    blocks = re.findall(r"```python\n(# notebook (\d\d).*?\n)(.*?)```", README.read_text(), re.S)
    assert blocks
    for _, number, cell in blocks:
        (path,) = (README.parent / "notebooks").glob(f"{number}_*.ipynb")
        sources = [c.source for c in nbformat.read(path, as_version=4).cells]
        quoted = any(cell.strip() in source for source in sources)
        assert quoted, f"README quotes a cell that {path.name} does not have"


def quick(code: str) -> str:
    for old, new in QUICK:
        code = code.replace(old, new)
    return code


def test_every_example_is_run_and_each_substitution_applies():
    with_examples = [page.name for page in pages() if python_blocks(page)]
    assert with_examples == ["README.md", "api.md"], "a page's examples that no test runs"
    assert len(python_blocks(README)) == 1 and len(python_blocks(API)) == 2
    text = "\n".join(python_blocks(README) + python_blocks(API))
    for old, _ in QUICK:
        assert old in text, f"no example contains {old!r} any more: update tests/test_readme.py"


def run_examples(page: Path) -> dict:
    scope: dict = {}
    for code in python_blocks(page):
        exec(compile(quick(code), str(page), "exec"), scope)
    return scope


def assert_subject_kept(scope: dict, feather: int = 3) -> None:
    """keep_subject (the default), feather=3: the subject is untouched inside the mask shrunk by
    3 px in every inpainted picture."""
    subject, mask = scope["subject"], scope["mask"]
    assert isinstance(subject, Image.Image)
    assert subject.size == (512, 512) and mask.shape == (512, 512)
    assert len(scope["inpainted"]) == 3
    assert all(image.size == subject.size for image in scope["inpainted"])
    inner = scope["sdsam_nb"].masks.shrink(mask, feather)
    for image in scope["inpainted"]:
        assert np.array_equal(np.asarray(image)[inner], np.asarray(subject)[inner])


@pytest.mark.slow
def test_the_readme_example_runs_on_the_tiny_models(tiny_sd, tiny_sam):
    assert_subject_kept(run_examples(README))


@pytest.mark.slow
def test_the_api_examples_run_on_the_tiny_models(tiny_sd, tiny_sam):
    scope = run_examples(API)
    assert_subject_kept(scope)
    subject, mask = scope["subject"], scope["mask"]
    assert scope["composed"].size == scope["bg"].size == subject.size
    assert [image.size for image in scope["banner"]] == [(910, 512)]
    assert scope["res"].mask.shape == mask.shape
    assert isinstance(scope["picker"], scope["sdsam_nb"].MaskPicker)
    assert scope["auto"].mask.shape == mask.shape


# What the pages point at: links, anchors, commands.

FENCED = re.compile(r"^```.*?^```[^\n]*$", re.M | re.S)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def prose(text: str) -> str:
    """The text outside fenced code blocks."""
    return FENCED.sub("", text)


def code(text: str) -> str:
    """The text inside fenced code blocks and inline code spans."""
    spans = re.findall(r"`([^`]+)`", prose(text))
    return "\n".join([m.group(0) for m in FENCED.finditer(text)] + spans)


def anchors(page: Path) -> set[str]:
    """The page's headings as GitHub links to them: lower case, punctuation dropped, spaces as
    hyphens, a repeated heading numbered (``-1``, ``-2``...)."""
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", prose(page.read_text(encoding="utf-8")), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        seen[slug] = seen.get(slug, -1) + 1
        found.add(slug if seen[slug] == 0 else f"{slug}-{seen[slug]}")
    return found


def test_github_anchors_are_worked_out_as_github_does():
    page = DOCS / "models.md"
    assert {"models", "which-background-method", "soft-edges"} <= anchors(page)


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_points_at_a_file_and_heading_that_exist(page):
    links = LINK.findall(prose(page.read_text(encoding="utf-8")))
    for link in links:
        if re.match(r"[a-z][a-z0-9+.-]*:", link):  # https:, mailto:
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.exists(), f"{page.name} links to {link}: no such file"
        if anchor and target.suffix == ".md":
            assert anchor in anchors(target), f"{page.name} links to {link}: no such heading"


def test_the_readme_is_a_front_door():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 170, f"README.md has {len(lines)} lines: move reference to docs/"
    assert lines[0] == "# sdsam-nb"
    for page in sorted(DOCS.glob("*.md")):
        assert f"(docs/{page.name})" in README.read_text(), f"README does not link {page.name}"


def test_the_readmes_two_commands_are_make_targets():
    (first, *_) = re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    commands = [line.split("#")[0].strip() for line in first.splitlines()]
    assert commands == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w.-]+) *:(?!=)", makefile, re.M))
    assert {"demo", "test"} <= targets


def subcommands(capsys) -> set[str]:
    """What ``sdsam-nb --help`` lists as its commands."""
    from sdsam_nb.__main__ import main

    with pytest.raises(SystemExit):
        main(["--help"])
    (listed,) = re.findall(r"\{([\w,-]+)\}", capsys.readouterr().out.split("\n\n")[0])
    return set(listed.split(","))


def test_every_command_the_pages_show_exists(capsys):
    known = subcommands(capsys)
    assert {"run", "replay", "batch", "sweep", "notebooks"} <= known
    shown = {}
    for page in pages():
        text = code(page.read_text(encoding="utf-8"))
        shown[page] = set(re.findall(r"(?:\bsdsam-nb|-m sdsam_nb)[ \t]+([a-z][\w-]*)", text))
        unknown = sorted(shown[page] - known)
        assert not unknown, f"{page.name} shows sdsam-nb {unknown}, which --help does not list"
    assert {"run", "replay", "batch", "sweep", "notebooks"} <= shown[README]


def test_the_package_readme_is_this_readme():
    """The package's long description is README.md (its links into docs/ are for the
    repository: docs/ is not in the wheel)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["readme"] == "README.md"
