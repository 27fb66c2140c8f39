"""What `pip install sdsam-nb` asks for, where it matters to users' platforms.

Read from the installed package's metadata: what pip sees (``make setup`` reinstalls the
package whenever pyproject.toml changes).
"""

from __future__ import annotations

from importlib import metadata

from packaging.requirements import Requirement


def requirements() -> dict[str, Requirement]:
    reqs = [Requirement(text) for text in metadata.requires("sdsam-nb") or []]
    return {r.name.lower(): r for r in reqs if r.marker is None}


def test_colab_keeps_its_own_ipywidgets():
    """Colab's custom widget manager renders ipycanvas/ipyevents with its ipywidgets 7.7.1;
    installing the kit there must not upgrade it to 8."""
    req = requirements()
    assert req["ipywidgets"].specifier.contains("7.7.1")
    assert req["ipywidgets"].specifier.contains("8.1.9")  # what CI runs (constraints.txt)


def test_ipycanvas_excludes_the_release_that_broke_on_colab():
    assert not requirements()["ipycanvas"].specifier.contains("0.13.1")
