"""examples/quickstart.py keeps to its own folder: the README's `segment ... -o out` then `evaluate out
examples/masks` afterwards see only their own masks (no stray prediction)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from skinseg.cli import main

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_then_the_readme_commands(tmp_path: Path, capsys) -> None:
    pytest.importorskip("torch")
    examples = tmp_path / "examples"  # a copy: the quickstart writes beside its own folder
    shutil.copytree(REPO_ROOT / "examples", examples, ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run([sys.executable, str(examples / "quickstart.py")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (tmp_path / "out").exists()
    assert (tmp_path / "quickstart_out" / "quickstart.png").is_file()
    assert main(["segment", str(examples / "images"), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "out"), str(examples / "masks"), "--quiet", "--format",
                 "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["n_images"] == 4 and payload["unmatched_predictions"] == [] and payload["n_not_taken"] == 0
