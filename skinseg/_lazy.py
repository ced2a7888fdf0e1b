"""Lazy attributes of a package (PEP 562), the one implementation behind every lazy ``__init__`` (private).

``__getattr__, __dir__ = lazy_attributes(__name__, {"Name": "submodule", ...})`` in a
package's ``__init__`` makes ``package.Name`` import ``package.submodule`` on first use
(and cache the value), so importing the package stays cheap and torch-free.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(package: str, table: dict[str, str],
                    submodules: Iterable[str] = ()) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: names from ``table`` (name -> submodule) and ``submodules``."""
    subs = set(submodules)

    def __getattr__(name: str) -> Any:
        if name in table:
            value = getattr(importlib.import_module(f".{table[name]}", package), name)
            sys.modules[package].__dict__[name] = value
            return value
        if name in subs:
            return importlib.import_module(f".{name}", package)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(sys.modules[package].__dict__) | set(table) | subs)

    return __getattr__, __dir__
