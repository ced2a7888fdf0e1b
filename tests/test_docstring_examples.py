"""The examples in docstrings run and print what they show (a user copies them first)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import skinseg

DEPRECATED_SHIMS = {"skinseg.onnx_backend"}  # importing them warns (FutureWarning)
MODULES = sorted(m.name for m in pkgutil.walk_packages(skinseg.__path__, "skinseg.")
                 if m.name not in DEPRECATED_SHIMS and not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, verbose=False, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples of {name} failed"


def test_a_broken_example_is_caught() -> None:
    """The check can fail: an example whose output differs is counted."""
    import types

    module = types.ModuleType("broken")
    module.__doc__ = ">>> 1 + 1\n3\n"
    assert doctest.testmod(module, verbose=False, report=False).failed == 1
