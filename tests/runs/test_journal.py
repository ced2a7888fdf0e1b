"""The run journal and the output-folder rules: lock, overwrite, changed and vanished inputs, entries
not taken as images, write failures (each a fix of a case that gave a silent wrong result before)."""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from skinseg.cli import main
from skinseg.errors import ConfigError
from skinseg.io import write_image
from skinseg.runs import OutputLockedError, segment_folder
from skinseg.runs.outdir import LOCK_FILE, OutputLock
from skinseg.testing import synthetic_lesion

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny_model():
    from skinseg.models import create_segmenter

    torch.manual_seed(0)
    model = create_segmenter("unet", encoder_name="resnet18", encoder_depth=3, decoder_channels=(32, 16, 8),
                             input_size=64)
    with torch.no_grad():
        model.network.segmentation_head[0].weight.mul_(20.0)
    return model.eval()


def _images(folder: Path, names: list[str], seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        write_image(folder / name, synthetic_lesion((40 + 5 * i, 56), rng=seed + i)[0])


def _journal_keys(out: Path) -> list[str]:
    return [json.loads(line)["file"] for line in (out / "journal.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------- lock (concurrent runs)


def test_a_second_run_on_a_locked_folder_is_refused_naming_the_first(tiny_model, tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    _images(src, ["a.png", "b.png"])
    with OutputLock(out, command="skinseg segment in -o out"):
        with pytest.raises(OutputLockedError, match=rf"process {os.getpid()} .*skinseg segment in -o out"):
            segment_folder(tiny_model, src, out, progress=False)
    assert not (out / "journal.jsonl").exists()  # nothing was done while locked
    assert segment_folder(tiny_model, src, out, progress=False).n_processed == 2  # released on exit


def test_wait_waits_for_the_other_run_then_resumes_it(tiny_model, tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    _images(src, ["a.png", "b.png"])
    segment_folder(tiny_model, src, out, progress=False)
    lock = OutputLock(out).acquire()
    timer = threading.Timer(0.5, lock.release)
    timer.start()
    t0 = time.monotonic()
    result = segment_folder(tiny_model, src, out, progress=False, wait=True)
    assert time.monotonic() - t0 >= 0.4
    assert result.n_processed == 0 and result.n_skipped == 2  # nothing processed twice


def test_two_concurrent_cli_runs_process_every_image_once(tmp_path: Path) -> None:
    """Two ``skinseg segment`` processes on one folder: with --wait the second resumes the first's run."""
    import subprocess
    import sys

    from skinseg.models import create_segmenter, save_checkpoint

    torch.manual_seed(0)
    ckpt = save_checkpoint(create_segmenter("unet", encoder_name="resnet18", encoder_depth=3,
                                            decoder_channels=(32, 16, 8), input_size=64), tmp_path / "ckpt")
    src, out = tmp_path / "in", tmp_path / "out"
    _images(src, [f"img{i}.png" for i in range(6)])
    cmd = [sys.executable, "-m", "skinseg", "segment", str(src), "-o", str(out), "--model", str(ckpt), "--quiet",
           "--wait"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(r["processed"] for r in results) == [0, 6]
    assert sorted(_journal_keys(out)) == [f"img{i}.png" for i in range(6)]  # each image exactly once


def test_cli_exits_2_when_the_folder_is_in_use(tmp_path: Path, capsys) -> None:
    from skinseg.models import create_segmenter, save_checkpoint

    ckpt = save_checkpoint(create_segmenter("unet", encoder_name="resnet18", encoder_depth=3,
                                            decoder_channels=(32, 16, 8), input_size=64), tmp_path / "ckpt")
    src, out = tmp_path / "in", tmp_path / "out"
    _images(src, ["a.png"])
    with OutputLock(out):
        assert main(["segment", str(src), "-o", str(out), "--model", str(ckpt), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "in use by another skinseg run" in err and "--wait" in err


# --------------------------------------------------------------------------- overwrite


def test_overwrite_removes_the_earlier_runs_outputs_and_nothing_else(tiny_model, tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    _images(src, ["a.png", "b.png", "c.png"])
    segment_folder(tiny_model, src, out, progress=False)
    (src / "c.png").unlink()
    (out / "notes.txt").write_text("mine")
    (out / "x_segmentation.png").write_bytes(b"not skinseg's")
    result = segment_folder(tiny_model, src, out, overwrite=True, progress=False)
    assert result.n_images == 2 and result.n_processed == 2
    assert not (out / "c_segmentation.png").exists() and not (out / "overlays" / "c_overlay.png").exists()
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "x_segmentation.png").read_bytes() == b"not skinseg's"
    assert sorted(_journal_keys(out)) == ["a.png", "b.png"]


# --------------------------------------------------------------------------- changed and vanished inputs


def test_a_replaced_input_is_redone_and_a_vanished_one_reported(tiny_model, tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    _images(src, ["a.png", "b.png", "c.png"])
    segment_folder(tiny_model, src, out, progress=False)
    before = (out / "b_segmentation.png").read_bytes()
    write_image(src / "b.png", np.zeros((70, 30, 3), np.uint8), overwrite=True)  # another image
    os.utime(src / "b.png", ns=(1, 1))
    (src / "c.png").unlink()
    result = segment_folder(tiny_model, src, out, progress=False)
    assert result.n_processed == 1 and result.n_skipped == 1
    assert (out / "b_segmentation.png").read_bytes() != before
    rows = (out / "results.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["a.png", "b.png"]
    assert ",30,70," in rows[2]  # the new image's size
    assert result.gone == ("c.png",) and (result.n_images, result.n_ok) == (2, 2)
    assert not (out / "c_segmentation.png").exists()
    summary = json.loads((out / "run.json").read_text())["last_run"]
    assert summary["gone"] == 1 and summary["images"] == 2


# --------------------------------------------------------------------------- entries not taken as images


def test_entries_not_taken_as_images_are_counted(tiny_model, tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    _images(src, ["a.png"])
    _images(src / "sub", ["deep.png"])
    (src / "folder.png").mkdir()
    (src / "gone.jpg").symlink_to(src / "nowhere.jpg")
    os.mkfifo(src / "pipe.png")
    write_image(src / "a_segmentation.png", np.zeros((4, 4, 3), np.uint8))
    (src / "notes.txt").write_text("x")
    result = segment_folder(tiny_model, src, out, progress=False)
    assert result.n_images == 1
    assert result.not_taken == {"dangling_link": 1, "directory_named_like_an_image": 1, "mask_suffix": 1,
                                "not_an_image_name": 1, "special_file": 1, "subfolder": 1}
    assert json.loads((out / "run.json").read_text())["last_run"]["not_taken"] == result.not_taken


def test_a_folder_of_masks_says_they_were_taken_for_masks(tiny_model, tmp_path: Path) -> None:
    src = tmp_path / "in"
    _images(src, ["a_segmentation.png", "b_segmentation.png"])
    with pytest.raises(ConfigError, match="2 file\\(s\\) ending in '_segmentation' were taken for masks"):
        segment_folder(tiny_model, src, tmp_path / "out", progress=False)


# --------------------------------------------------------------------------- write failures


def test_a_failing_run_file_write_names_the_file_exits_2_and_leaves_no_temp(tmp_path: Path, capsys,
                                                                            monkeypatch) -> None:
    import skinseg._files as files
    from skinseg.models import create_segmenter, save_checkpoint

    ckpt = save_checkpoint(create_segmenter("unet", encoder_name="resnet18", encoder_depth=3,
                                            decoder_channels=(32, 16, 8), input_size=64), tmp_path / "ckpt")
    src, out = tmp_path / "in", tmp_path / "out"
    _images(src, ["a.png"])
    real_fsync = os.fsync

    def full_disk(fd: int) -> None:
        if "run.json" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", full_disk)
    assert main(["segment", str(src), "-o", str(out), "--model", str(ckpt), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "run.json" in err and "No space left on device" in err
    assert "Traceback" not in err
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing else was written


def test_export_onnx_into_an_unwritable_place_exits_2(tmp_path: Path, capsys) -> None:
    pytest.importorskip("onnx")
    from skinseg.models import create_segmenter, save_checkpoint

    ckpt = save_checkpoint(create_segmenter("unet", encoder_name="resnet18", encoder_depth=3,
                                            decoder_channels=(32, 16, 8), input_size=64), tmp_path / "ckpt")
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    assert main(["export-onnx", str(ckpt), "-o", str(blocker / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and str(blocker) in err
    assert blocker.read_text() == "a file where a folder should be"
