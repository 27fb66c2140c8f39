"""What `pip install sdsam-nb` asks for, where it matters to users' platforms.

Read from the installed package's metadata: what pip sees (``make setup`` reinstalls the
package whenever pyproject.toml changes).
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


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


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def test_conda_environment_asks_for_the_same_ipywidgets():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    (spec,) = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("ipywidgets")]
    assert Requirement(spec).specifier == requirements()["ipywidgets"].specifier


def test_pre_commit_runs_the_pinned_ruff():
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    (ruff,) = [r for r in config["repos"] if r["repo"].endswith("ruff-pre-commit")]
    assert ruff["rev"] == "v" + _pins()["ruff"]


def test_version_comes_from_the_installed_metadata():
    import sdsam_nb

    assert sdsam_nb.__version__ == metadata.version("sdsam-nb")


def test_every_declared_dependency_is_used():
    """Imported by the kit, or needed at run time by a library that does not declare it."""
    needed_not_imported = {"torchvision", "accelerate", "ipykernel"}
    imported = set()
    for path in (ROOT / "sdsam_nb").rglob("*.py"):
        for line in path.read_text().splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] in ("import", "from"):
                imported.add(words[1].split(".")[0])
    import_name = {
        "pillow": "PIL",
        "opencv-python-headless": "cv2",
        "segment-anything": "segment_anything",
        "ruamel.yaml": "ruamel",
    }
    for name in requirements():
        if name in needed_not_imported:
            continue
        assert import_name.get(name, name.replace("-", "_")) in imported, name


def test_every_subpackage_ships():
    """pyproject.toml lists the packages explicitly (the notebooks and data are mapped in):
    a new subpackage missing from the list would be missing from every wheel."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "sdsam_nb").rglob("__init__.py")
    }
    assert found <= listed, found - listed
