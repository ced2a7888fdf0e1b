"""The ONNX export cache: the tests never use the user's, and an unwritable one never stops a run."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from skinseg.cli import main
from skinseg.cli._common import cache_dir
from skinseg.errors import SkinsegWarning
from skinseg.io import write_image
from skinseg.testing import synthetic_lesion


def test_the_tests_never_write_the_users_cache() -> None:
    home, tmp = Path.home().resolve(), Path(tempfile.gettempdir()).resolve()
    for path in (cache_dir(), Path(os.environ["XDG_CACHE_HOME"]), Path(os.environ["MPLCONFIGDIR"])):
        assert tmp in path.resolve().parents and home not in path.resolve().parents


def test_an_unwritable_cache_falls_back_to_a_temporary_one_with_one_warning(tmp_path: Path, monkeypatch,
                                                                           capsys) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("SKINSEG_CACHE_DIR", str(blocker / "cache"))
    fallback = cache_dir()
    assert fallback.is_dir() and os.access(fallback, os.W_OK) and blocker not in fallback.parents
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and str(blocker / "cache") in err and "SKINSEG_CACHE_DIR" in err
    monkeypatch.delenv("SKINSEG_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(blocker))  # a home that cannot hold ~/.cache
    assert cache_dir().is_dir() and capsys.readouterr().err.count("warning:") == 1


@pytest.mark.parametrize("command", ["segment", "classify"])
def test_a_run_with_an_unwritable_cache_runs_and_warns_once(command, tmp_path: Path, tiny_checkpoint: Path,
                                                            tiny_classifier_checkpoint: Path, monkeypatch,
                                                            capsys) -> None:
    """classify exports its classifier (and the fp32 segmenter) into the same cache: the same fallback."""
    pytest.importorskip("onnx")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("SKINSEG_CACHE_DIR", str(blocker / "cache"))
    src = tmp_path / "in"
    for i in range(2):
        write_image(src / f"img{i}.png", synthetic_lesion((40, 56), rng=i)[0])
    out = tmp_path / "out"
    if command == "segment":
        args = ["segment", str(src), "-o", str(out), "--model", str(tiny_checkpoint), "--backend", "onnx",
                "--precision", "fp32", "--quiet"]
    else:
        args = ["classify", str(src), "-o", str(out), "--segmenter", str(tiny_checkpoint), "--classifier",
                str(tiny_classifier_checkpoint), "--quiet"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "cannot be written" in err
    assert (out / ("img1_segmentation.png" if command == "segment" else "masks/img1_mask.png")).is_file()


@pytest.mark.parametrize("kind", ["segmenter", "classifier"])
def test_the_library_export_runs_from_memory_when_the_cache_cannot_be_written(
        kind, tmp_path: Path, tiny_checkpoint: Path, tiny_classifier_checkpoint: Path) -> None:
    pytest.importorskip("onnx")
    from skinseg.inference import load_onnx_for_checkpoint

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    ckpt = tiny_checkpoint if kind == "segmenter" else tiny_classifier_checkpoint
    backend = load_onnx_for_checkpoint(ckpt, kind=kind, cache_dir=blocker / "cache")
    x = synthetic_lesion((64, 64), rng=0)[0].transpose(2, 0, 1)[None].astype("float32") / 255
    with pytest.warns(SkinsegWarning, match="runs from memory"):
        probs = backend.run(x)
    assert probs.shape == ((1, 64, 64) if kind == "segmenter" else (1, 3))
