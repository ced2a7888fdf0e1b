"""The README's promise: every error skinseg raises on purpose is a SkinsegError, also the built-in one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import skinseg as ss
from skinseg import errors, io, preprocess
from skinseg.errors import SkinsegError


def _raises(exc_type: type[BaseException], call, *args, **kwargs) -> BaseException:
    """``call`` raises an error that is a SkinsegError and an ``exc_type`` (old ``except`` clauses work)."""
    with pytest.raises(SkinsegError) as info:
        call(*args, **kwargs)
    assert isinstance(info.value, exc_type), type(info.value).__mro__
    return info.value


def test_wrong_argument_types_are_skinseg_errors_and_type_errors(tmp_path: Path) -> None:
    _raises(TypeError, ss.read_image, None)
    _raises(TypeError, ss.read_mask, 42)
    _raises(TypeError, io.read_image_bytes, "not bytes")
    _raises(TypeError, preprocess.remove_hair, [[1, 2, 3]])
    _raises(TypeError, ss.write_mask, None, np.zeros((2, 2), bool))
    _raises(TypeError, preprocess.Preprocess, {"hair_removal": "dullrazor"})


def test_missing_paths_and_folders_are_skinseg_errors_and_os_errors(tmp_path: Path) -> None:
    err = _raises(FileNotFoundError, ss.read_image, tmp_path / "nope.jpg")
    assert "nope.jpg" in str(err)
    _raises(FileNotFoundError, ss.read_mask, tmp_path / "nope.png")
    _raises(IsADirectoryError, ss.read_image, tmp_path)
    _raises(IsADirectoryError, ss.read_mask, tmp_path)
    _raises(FileNotFoundError, ss.list_images, tmp_path / "missing")
    (tmp_path / "a.txt").write_text("x")
    _raises(NotADirectoryError, ss.list_images, tmp_path / "a.txt")
    _raises(FileNotFoundError, ss.pair_images_and_masks, tmp_path / "missing")
    from skinseg.runs import check_output_dir

    _raises(FileNotFoundError, check_output_dir, tmp_path / "missing", tmp_path / "out")
    _raises(NotADirectoryError, check_output_dir, tmp_path / "a.txt", tmp_path / "out")


def test_existing_outputs_and_folders_as_targets_are_skinseg_errors(tmp_path: Path) -> None:
    mask = np.zeros((4, 4), bool)
    ss.write_mask(tmp_path / "m.png", mask)
    err = _raises(FileExistsError, ss.write_mask, tmp_path / "m.png", mask)
    assert "m.png" in str(err)
    (tmp_path / "d.png").mkdir()
    _raises(IsADirectoryError, ss.write_mask, tmp_path / "d.png", mask, overwrite=True)


def test_missing_checkpoints_and_manifests_are_skinseg_errors(tmp_path: Path) -> None:
    _raises(errors.CheckpointError, ss.load_segmenter, tmp_path / "no_such_model")
    from skinseg.data import read_manifest

    _raises(FileNotFoundError, read_manifest, tmp_path / "manifest.csv")


def test_the_new_classes_keep_their_builtin_bases() -> None:
    for cls, base in ((errors.ArgumentTypeError, TypeError), (errors.PathNotFoundError, FileNotFoundError),
                      (errors.PathIsFolderError, IsADirectoryError),
                      (errors.PathNotFolderError, NotADirectoryError),
                      (errors.OutputExistsError, FileExistsError)):
        assert issubclass(cls, SkinsegError) and issubclass(cls, base)
        assert cls.__name__ in errors.__all__
