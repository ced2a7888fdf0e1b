"""The README's install runs everything it documents: ``pip install .`` (core dependencies only), then
``skinseg train`` on a few images, then ``skinseg segment --model RUN/best`` with the default options
(ONNX Runtime on the CPU, which exports the trained checkpoint once: that export needs ``onnx``).

The flow runs in a subprocess; every third-party package it imports must be a core dependency of
skinseg or a requirement of one (the closure read from the installed packages' metadata), so a
package that only an extra installs fails the test here rather than on a user's first run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
packaging_requirements = pytest.importorskip("packaging.requirements")


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _project() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]


def _closure(requirements: list[str]) -> set[str]:
    """The distributions that installing ``requirements`` brings in (markers evaluated, extras followed)."""
    seen: set[str] = set()
    todo = [packaging_requirements.Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = _canon(req.name)
        key = name + "[" + ",".join(sorted(req.extras)) + "]"
        if key in seen:
            continue
        seen.update({key, name})
        try:
            requires = metadata.requires(req.name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            sub = packaging_requirements.Requirement(text)
            wanted = {""} | set(req.extras)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in wanted):
                todo.append(sub)
    return {s for s in seen if "[" not in s}


def test_onnx_is_a_core_dependency_and_the_old_extra_still_works() -> None:
    project = _project()
    core = {_canon(packaging_requirements.Requirement(r).name) for r in project["dependencies"]}
    assert {"onnx", "onnxruntime"} <= core
    extra = {_canon(packaging_requirements.Requirement(r).name)
             for r in project["optional-dependencies"]["onnx"]}
    assert extra == {"onnx", "onnxruntime"}  # `pip install "skinseg-dermoscopy[onnx]"` keeps working


def _core_site(root: Path, allowed: set[str]) -> Path:
    """A site folder holding only the installed files of ``allowed`` distributions (symbolic links), i.e. what
    ``pip install .`` puts on sys.path; run ``python -S`` with it on PYTHONPATH."""
    site = root / "site"
    site.mkdir()
    for dist in metadata.distributions():
        if _canon(dist.metadata["Name"]) not in allowed:
            continue
        for file in dist.files or []:
            top = file.parts[0]
            source = Path(dist.locate_file(top))
            if top in ("..", "__pycache__") or top.endswith(".pth") or not source.exists():
                continue
            if not (site / top).exists():
                (site / top).symlink_to(source)
    return site


FLOW = r"""
import importlib.util, json, sys

assert importlib.util.find_spec("pytest") is None and importlib.util.find_spec("torch") is not None
from skinseg.cli import main

data, run, images, out = sys.argv[1:5]
rc_train = main(["train", "--data", data, "--epochs", "1", "--max-batches", "2", "--batch-size", "2",
                 "--input-size", "64", "--device", "cpu", "--out", run])
rc_segment = main(["segment", images, "-o", out, "--model", run + "/best", "--quiet"])
modules = sorted({m.split(".")[0] for m in sys.modules})
print(json.dumps({"train": rc_train, "segment": rc_segment, "modules": modules}))
"""


@pytest.mark.slow
def test_train_then_segment_with_the_default_options_needs_only_core_dependencies(tmp_path: Path,
                                                                                   seg_folder: Path) -> None:
    site = _core_site(tmp_path, _closure(_project()["dependencies"]))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(site)])}
    run, out = tmp_path / "run", tmp_path / "out"
    argv = [sys.executable, "-S", "-c", FLOW, str(seg_folder), str(run), str(seg_folder / "images"), str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["train"] == 0 and result["segment"] == 0, proc.stderr[-3000:]
    assert len(list(out.glob("*_segmentation.png"))) == 6
    assert json.loads((out / "run.json").read_text())["settings"]["backend"] == "onnx"  # the default path
    assert "onnx" in result["modules"]  # the trained checkpoint was exported
