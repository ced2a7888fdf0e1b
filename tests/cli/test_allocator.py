"""The folder commands' memory settings: glibc malloc tuned by the CLI, ONNX Runtime without a memory pattern.

The peak memory itself is measured by ``benchmarks/classify_vs_segment.py`` (issue 26: classify at
most 500 MiB on 200 images of 512x384); these tests pin the settings that keep it there.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import pytest

import skinseg.cli._common as common
from skinseg.cli import main
from skinseg.io import write_image
from skinseg.testing import synthetic_lesion

glibc = pytest.mark.skipif(sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")


@glibc
def test_tune_allocator_sets_both_malloc_parameters(monkeypatch) -> None:
    calls = []

    class FakeLibc:
        def mallopt(self, param: int, value: int) -> int:
            calls.append((param, value))
            return 1

    monkeypatch.setattr("ctypes.CDLL", lambda name: FakeLibc())
    assert common.tune_allocator() is True
    assert calls == [(-8, 2), (-3, 1 << 20)]  # M_ARENA_MAX 2, M_MMAP_THRESHOLD 1 MiB


@glibc
def test_tune_allocator_really_applies_on_this_libc() -> None:
    assert common.tune_allocator() is True  # mallopt returns 1 when the parameter is taken


def test_tune_allocator_leaves_other_allocators_alone(monkeypatch) -> None:
    monkeypatch.setattr(platform, "libc_ver", lambda: ("", ""))
    monkeypatch.setattr("ctypes.CDLL", lambda name: pytest.fail("libc must not be loaded"))
    assert common.tune_allocator() is False


@pytest.mark.parametrize("command", ["segment", "classify"])
def test_folder_commands_tune_the_allocator_first(command: str, tmp_path: Path, monkeypatch) -> None:
    called = []
    module = __import__(f"skinseg.cli.{command}", fromlist=["run"])

    def record() -> bool:
        called.append(command)
        raise SystemExit(7)  # stop before any model is loaded: only the order is under test

    monkeypatch.setattr(module, "tune_allocator", record)
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "a.png", synthetic_lesion((64, 64), rng=0)[0])
    with pytest.raises(SystemExit):
        main([command, str(src), "-o", str(tmp_path / "out"), "--quiet"])
    assert called == [command]
    assert not (tmp_path / "out").exists()


def test_onnx_sessions_have_no_memory_pattern() -> None:
    ort = pytest.importorskip("onnxruntime")
    from skinseg.inference.onnx import session_options

    options = session_options(ort, None)
    assert options.enable_mem_pattern is False
    assert options.inter_op_num_threads == 1
    assert options.intra_op_num_threads == max(1, (os.cpu_count() or 2) // 2)
