"""Print pip constraints that hold the kit's declared lower bounds (pyproject.toml) exactly.

The packages a Colab runtime (or any existing environment) brings at its own versions are
installed at the lowest version pyproject.toml allows, so that the tests prove each floor;
torch and torchvision stay the pinned pair, and the test tools (the ``test`` extra) are held at
constraints.txt's versions, so a new pytest or ruff release cannot turn this stage red.
Everything else resolves freely.

    python .ci/floors.py > floors.txt && pip install -c floors.txt dist/sdsam_nb-*.whl
"""

from __future__ import annotations

import sys
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

AT_FLOOR = (
    "diffusers",
    "transformers",
    "huggingface_hub",
    "accelerate",
    "ipywidgets",
    "ipycanvas",
    "papermill",
)
PINNED = ("torch==2.14.1", "torchvision==0.29.1")


def floors(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    declared = {Requirement(r).name.lower(): Requirement(r) for r in project["dependencies"]}
    lines = []
    for name in AT_FLOOR:
        req = declared[name.lower()]
        (low,) = [s.version for s in req.specifier if s.operator == ">="]
        lines.append(f"{name}=={low}")
    return [*lines, *PINNED, *tools(pyproject)]


def tools(pyproject: Path) -> list[str]:
    """constraints.txt's pins of the ``test`` extra's packages."""
    project = tomllib.loads(pyproject.read_text())["project"]
    wanted = {Requirement(r).name.lower() for r in project["optional-dependencies"]["test"]}
    pins = (pyproject.parent / "constraints.txt").read_text().splitlines()
    return [line for line in pins if "==" in line and line.split("==")[0].lower() in wanted]


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    sys.stdout.write("\n".join(floors(root / "pyproject.toml")) + "\n")
