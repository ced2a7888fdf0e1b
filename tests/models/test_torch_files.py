"""Torch files from the user (--encoder-weights, a run's last.pt) are read without running code, and every
refusal is a CheckpointError naming the file in whole sentences."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from skinseg.errors import CheckpointError

torch = pytest.importorskip("torch")


class _Payload:
    """Unpickling this would run code: create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def _files(tmp_path: Path) -> dict[str, Path]:
    files = {"pickle": tmp_path / "evil.pt", "garbage": tmp_path / "garbage.pt", "list": tmp_path / "list.pt",
             "safetensors": tmp_path / "bad.safetensors"}
    torch.save({"model": _Payload(tmp_path / "code_ran")}, files["pickle"])
    files["garbage"].write_bytes(b"hello, this is not a checkpoint" * 8)
    torch.save([1, 2, 3], files["list"])
    files["safetensors"].write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    return files


@pytest.mark.parametrize("kind", ["pickle", "garbage", "list", "safetensors"])
def test_bad_encoder_weights_are_a_clear_error_naming_the_file(tmp_path: Path, kind: str) -> None:
    from skinseg.models import create_segmenter

    path = _files(tmp_path)[kind]
    with pytest.raises(CheckpointError) as info:
        create_segmenter("unet", encoder_name="resnet18", encoder_depth=3, decoder_channels=(32, 16, 8),
                         encoder_weights=path)
    message = str(info.value)
    assert f"Encoder weights '{path}'" in message
    assert not (tmp_path / "code_ran").exists()
    if kind == "pickle":  # the whole warning, not cut mid-sentence
        assert "could run code when loaded" in message and "ran no code from it" in message
        assert "posix.mkdir" in message or "GLOBAL" in message


def test_a_resume_state_with_code_is_refused_with_the_whole_sentence(tmp_path: Path) -> None:
    from skinseg.training import load_resume_state

    network = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    path = _files(tmp_path)["pickle"]
    with pytest.raises(CheckpointError) as info:
        load_resume_state(path, network=network, optimizer=optimizer)
    message = str(info.value)
    assert not (tmp_path / "code_ran").exists()
    assert "holds Python objects other than tensors, which could run code when loaded." in message
    assert "so it refused the file and ran no code from it" in message
    assert message.endswith("To start the run over, delete it (or pass resume=False).")


def test_the_train_command_reports_bad_encoder_weights(tmp_path: Path, seg_folder: Path, capsys) -> None:
    from skinseg.cli import main

    root = seg_folder
    path = _files(tmp_path)["garbage"]
    rc = main(["train", "--data", str(root), "--encoder", "resnet18", "--encoder-weights", str(path),
               "--input-size", "64", "--epochs", "1", "--out", str(tmp_path / "run")])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Encoder weights") and str(path) in err and "Traceback" not in err
