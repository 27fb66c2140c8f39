"""What `pip install sdsam-nb` asks for, where it matters to users' platforms."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {(r := Requirement(text)).name.lower(): r for text in project["dependencies"]}


def test_colab_keeps_its_own_ipywidgets():
    """Colab's custom widget manager renders ipycanvas/ipyevents with its ipywidgets 7.7.1;
    installing the kit there must not upgrade it to 8."""
    req = requirements()
    assert req["ipywidgets"].specifier.contains("7.7.1")
    assert req["ipywidgets"].specifier.contains("8.1.9")  # what CI runs (constraints.txt)


def test_ipycanvas_excludes_the_release_that_broke_on_colab():
    assert not requirements()["ipycanvas"].specifier.contains("0.13.1")
