"""``--include-runs`` and ``--verify-inputs`` reach the run for both folder commands (segment, classify)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skinseg.cli import main
from skinseg.io import write_image
from skinseg.testing import synthetic_lesion


@pytest.mark.parametrize("command", ["segment", "classify"])
def test_include_runs_and_verify_inputs_flags(command, tiny_classifier_checkpoint, tmp_path: Path,
                                              capsys) -> None:
    project = tmp_path / "P"
    (project / "imgs").mkdir(parents=True)
    write_image(project / "imgs" / "a.jpg", synthetic_lesion((40, 56), rng=0)[0])
    write_image(project / "b.jpg", synthetic_lesion((40, 56), rng=1)[0])
    assert main(["segment", str(project / "imgs"), "-o", str(project), "--quiet"]) == 0  # P holds a run now
    args = [command, str(project), "--quiet"]
    if command == "classify":
        args += ["--classifier", str(tiny_classifier_checkpoint), "--no-measure"]
    capsys.readouterr()
    assert main([*args, "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "hold an earlier skinseg run" in err and "--include-runs" in err
    out = tmp_path / "out2"
    assert main([*args, "-o", str(out), "--include-runs", "--verify-inputs", "--convert"]) == 0
    lines = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    assert "b.jpg" in {line["file"] for line in lines}
    assert all(line["input"][2].startswith("blake2b:") for line in lines)  # a hash of each input
