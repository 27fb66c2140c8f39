"""Names of a package that load on first use (PEP 562), as diffusers' do: importing the
package, or one light module of it, does not import what its other modules need (torch,
diffusers); a name is imported from its module when it is first asked for."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from importlib import import_module
from importlib.util import find_spec


def lazy_names(
    package: str, defined_in: dict[str, str], public: Iterable[str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``'s ``__init__``: a name of ``defined_in`` is
    read from the module it maps to (relative to ``package``: ``".sd"``, ``"..usage"``) and
    then kept in the package; any other name is a submodule, imported when asked for.
    ``public``: what ``dir(package)`` lists besides what the package holds already."""

    def __getattr__(name: str):
        if name not in defined_in:  # a submodule (sdsam_nb.models.tiny...)
            if name.startswith("_") or find_spec(f"{package}.{name}") is None:
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
            return import_module(f"{package}.{name}")
        value = getattr(import_module(defined_in[name], package), name)
        setattr(sys.modules[package], name, value)  # looked up once
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *public})

    return __getattr__, __dir__
