"""Hard-link torch's CUDA build from one venv into another: the files of the distributions
torch, triton and nvidia-* (5.3 GB, most of a venv here), as their RECORD lists them.

    python .ci/link_torch.py SOURCE_SITE_PACKAGES TARGET_SITE_PACKAGES

pip in the target then finds them installed and copies nothing. The target gets the same
files, not a second copy on the disk. Where a link cannot be made (another file system), what
was linked is removed again and pip installs copies of its own; this script always exits 0.
"""

from __future__ import annotations

import os
import shutil
import sys
from importlib import metadata
from pathlib import Path


def _linked(dist: metadata.Distribution) -> bool:
    name = dist.metadata["Name"].lower()
    return name in ("torch", "triton") or name.startswith("nvidia-")


def main(source: str, target: str) -> int:
    src, dst = Path(source), Path(target)
    dists = [d for d in metadata.distributions(path=[str(src)]) if _linked(d)]
    if any(metadata.distributions(path=[str(dst)], name="torch")) or not dists:
        return 0  # torch is there already, or nothing to link from
    made: set[Path] = set()
    try:
        for dist in dists:
            for file in dist.files or ():
                if ".." in file.parts or (dst / file).exists():  # a script in bin/; a shared file
                    continue
                top = dst / file.parts[0]
                if not top.exists():
                    made.add(top)
                (dst / file).parent.mkdir(parents=True, exist_ok=True)
                os.link(src / file, dst / file)
    except OSError as exc:
        for top in made:
            shutil.rmtree(top) if top.is_dir() else top.unlink(missing_ok=True)
        print(f"link_torch: no hard links ({exc.strerror}): pip installs torch's own copy")
        return 0
    print(f"link_torch: {len(dists)} distributions hard-linked from {src}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
