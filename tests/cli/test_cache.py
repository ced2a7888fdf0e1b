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


def test_segment_with_an_unwritable_cache_runs_and_warns_once(tmp_path: Path, tiny_checkpoint: Path,
                                                             monkeypatch, capsys) -> None:
    pytest.importorskip("onnx")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("SKINSEG_CACHE_DIR", str(blocker / "cache"))
    src = tmp_path / "in"
    for i in range(2):
        write_image(src / f"img{i}.png", synthetic_lesion((40, 56), rng=i)[0])
    args = ["segment", str(src), "-o", str(tmp_path / "out"), "--model", str(tiny_checkpoint), "--backend",
            "onnx", "--precision", "fp32", "--quiet"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "cannot be written" in err
    assert (tmp_path / "out" / "img1_segmentation.png").is_file()


def test_the_library_export_runs_from_memory_when_the_cache_cannot_be_written(tmp_path: Path,
                                                                              tiny_checkpoint: Path) -> None:
    pytest.importorskip("onnx")
    from skinseg.inference import load_onnx_for_checkpoint

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    backend = load_onnx_for_checkpoint(tiny_checkpoint, cache_dir=blocker / "cache")
    x = synthetic_lesion((64, 64), rng=0)[0].transpose(2, 0, 1)[None].astype("float32") / 255
    with pytest.warns(SkinsegWarning, match="runs from memory"):
        probs = backend.run(x)
    assert probs.shape == (1, 64, 64)
