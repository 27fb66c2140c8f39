"""The README's Python examples run as written, on the tiny models with quick settings.

Only model ids and the sizes and step counts that make the tiny models slow are substituted;
everything else (names, arguments, the order of calls) is the README's own text.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

README = Path(__file__).resolve().parent.parent / "README.md"
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


def python_blocks() -> list[str]:
    """The README's Python examples, less the notebook cells it quotes (``# notebook ...``:
    they run in the notebooks, which tests/test_notebooks.py executes and checks for them)."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
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


def test_readme_has_the_examples_and_each_substitution_applies():
    blocks = python_blocks()
    assert len(blocks) == 2
    text = "\n".join(blocks)
    for old, _ in QUICK:
        assert old in text, f"README no longer contains {old!r}: update tests/test_readme.py"


@pytest.mark.slow
def test_readme_examples_run_on_the_tiny_models(tiny_sd, tiny_sam):
    scope: dict = {}
    for code in python_blocks():
        exec(compile(quick(code), str(README), "exec"), scope)
    subject, mask = scope["subject"], scope["mask"]
    assert subject.size == (512, 512) and mask.shape == (512, 512)
    assert len(scope["inpainted"]) == 3
    assert all(image.size == subject.size for image in scope["inpainted"])
    assert scope["composed"].size == scope["bg"].size == subject.size
    assert [image.size for image in scope["banner"]] == [(910, 512)]
    assert scope["res"].mask.shape == mask.shape
    assert isinstance(scope["picker"], scope["sdsam_nb"].MaskPicker)
    assert scope["auto"].mask.shape == mask.shape
    # keep_subject=True, feather=3: the subject is untouched inside the mask shrunk by 3 px
    inner = scope["sdsam_nb"].masks.shrink(mask, 3)
    for image in scope["inpainted"]:
        assert np.array_equal(np.asarray(image)[inner], np.asarray(subject)[inner])
    assert isinstance(subject, Image.Image)
