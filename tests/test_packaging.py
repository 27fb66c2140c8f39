"""What `pip install sdsam-nb` asks for, where it matters to users' platforms.

Read from the installed package's metadata: what pip sees (``make setup`` reinstalls the
package whenever pyproject.toml changes).
"""

from __future__ import annotations

import os
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


def _link_torch():
    """``.ci/link_torch.py`` as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("link_torch", ROOT / ".ci" / "link_torch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_dist(site: Path, name: str, files: list[str]) -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    for file in files:
        if ".." not in file:
            (site / file).parent.mkdir(parents=True, exist_ok=True)
            (site / file).write_text(file)
    listed = [*files, f"{info.name}/METADATA", f"{info.name}/RECORD"]
    (info / "RECORD").write_text("".join(f"{f},,\n" for f in listed))


def test_the_floor_venv_hard_links_torch_or_leaves_nothing_behind(tmp_path, monkeypatch):
    link = _link_torch()
    src, dst = tmp_path / "src", tmp_path / "dst"
    _fake_dist(src, "torch", ["torch/__init__.py", "torchgen/gen.py", "../../../bin/torchrun"])
    _fake_dist(src, "nvidia-cublas", ["nvidia/cublas/lib.so"])
    _fake_dist(src, "numpy", ["numpy/__init__.py"])
    dst.mkdir()
    assert link.main(str(src), str(dst)) == 0
    for file in ("torch/__init__.py", "torchgen/gen.py", "nvidia/cublas/lib.so"):
        assert (dst / file).stat().st_ino == (src / file).stat().st_ino  # the same file
    assert (dst / "torch-1.0.dist-info" / "RECORD").is_file()  # pip finds it installed
    assert not (dst / "numpy").exists() and not (tmp_path / "bin").exists()
    assert link.main(str(src), str(dst)) == 0  # torch is there: nothing more is done

    # where a link cannot be made (another file system), nothing is left for pip to trip on
    other = tmp_path / "other"
    other.mkdir()
    calls, real_link = [], os.link

    def fails_on_the_third(a, b):
        calls.append(b)
        if len(calls) == 3:
            raise OSError(18, "Invalid cross-device link")
        return real_link(a, b)

    monkeypatch.setattr(link.os, "link", fails_on_the_third)
    assert link.main(str(src), str(other)) == 0
    assert len(calls) == 3 and list(other.iterdir()) == []  # two links made, then undone
