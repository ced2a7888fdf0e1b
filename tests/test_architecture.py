"""The architecture stays easy to see: dependencies point one way through the
pipeline stages, and the numpy-only stages never import torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "skinseg"

# stage of each top-level module: a module may import only modules of the same or an earlier stage
STAGES = {
    "__init__": 0, "_types": 0, "errors": 0, "_checks": 0, "_geometry": 0,
    "io": 1, "_imagefile": 1,
    "preprocess": 2, "testing": 2, "augment": 2,
    "models": 3, "losses": 3, "data": 3, "inference": 3, "onnx_backend": 3, "training": 4,
    "postprocess": 5,
    "metrics": 6, "crops": 6, "features": 6, "report": 7, "classify": 7,
    "folder": 8,
    "cli": 9, "__main__": 9,
}
NUMPY_ONLY = ["skinseg", "skinseg.io", "skinseg.preprocess", "skinseg.postprocess", "skinseg.metrics",
              "skinseg.report", "skinseg.testing", "skinseg.crops",
              "skinseg.features", "skinseg.augment"]


def _module_files():
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG)
        yield rel.parts[0].removesuffix(".py"), rel, path


def _imported_stages(path: Path, rel: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    depth = len(rel.parts) - 1  # package nesting of this file
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module and node.module.startswith("skinseg."):
                    found.add(node.module.split(".")[1])
                continue
            up = node.level - 1
            base = list(rel.parts[:-1])
            if up > depth:
                continue
            base = base[: len(base) - up] if up else base
            target = base + (node.module.split(".") if node.module else [])
            if target:
                found.add(target[0])
            else:  # "from . import x" at the package root
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("skinseg."):
                    found.add(alias.name.split(".")[1])
    return found


def test_every_module_has_a_stage():
    assert {top for top, _, _ in _module_files()} <= set(STAGES)


@pytest.mark.parametrize("top,rel,path", list(_module_files()), ids=lambda v: str(v) if isinstance(v, Path) else "")
def test_dependencies_point_one_way(top, rel, path):
    if top == "__init__":
        return  # the package root re-exports lazily
    bad = {m for m in _imported_stages(path, rel) if m in STAGES and STAGES[m] > STAGES[top]}
    assert not bad, f"{rel} (stage {STAGES[top]}) imports later stages {sorted(bad)}"


def test_numpy_stages_do_not_import_torch():
    code = "import sys\n" + "".join(f"import {m}\n" for m in NUMPY_ONLY) + "print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
