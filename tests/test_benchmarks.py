"""The benchmark scripts: importing one does nothing, the shared helpers, public skinseg names only.

Light: nothing here runs a benchmark or reads the dev set.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH = REPO_ROOT / "benchmarks"
SCRIPTS = sorted(BENCH.glob("*.py"))

IMPORT_BY_PATH = """
import importlib.util, sys
path = sys.argv[1]
sys.path.insert(0, str(__import__("pathlib").Path(path).parent))  # as `python benchmarks/x.py` does
spec = importlib.util.spec_from_file_location("benchmark_under_test", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
"""


def load_common():
    spec = importlib.util.spec_from_file_location("benchmarks_common_under_test", BENCH / "_common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def common():
    return load_common()


def test_there_are_benchmarks():
    names = {p.name for p in SCRIPTS}
    assert {"_common.py", "inference_sweep.py", "evaluate_segmenter.py", "bf16_check.py"} <= names


def test_every_benchmark_imports_without_doing_work(tmp_path):
    """Importing a script (by path, in its own process) prints nothing and returns at once.

    The dev set is pointed at a folder that does not exist, so a script that reads data or
    parses arguments at import time fails, and one that runs a benchmark times out.
    """
    env = {**os.environ, "SKINSEG_DATA_DIR": str(tmp_path / "no-such-data" / "lesions"),
           "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
           "NO_ALBUMENTATIONS_UPDATE": "1", "HF_HUB_OFFLINE": "1"}
    procs = {
        p.name: subprocess.Popen([sys.executable, "-c", IMPORT_BY_PATH, str(p)], cwd=tmp_path, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for p in SCRIPTS
    }
    deadline = time.monotonic() + 120
    failures = []
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            failures.append(f"{name}: import did not return (work at import time?)")
            continue
        if proc.returncode != 0 or out or err:
            failures.append(f"{name}: exit {proc.returncode}, stdout {out[-300:]!r}, stderr {err[-600:]!r}")
    assert not failures, "\n".join(failures)


def private_skinseg_names(path: Path) -> list[str]:
    """Private skinseg names a script uses.

    ``from skinseg.x import _y``, ``from skinseg._x import y``, ``import skinseg._x``, and
    ``skinseg._x`` (or ``skinseg.x._y``) anywhere in the text. Dunder names such as
    ``skinseg.__all__`` and ``__version__`` are public.
    """
    source = path.read_text(encoding="utf-8")
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "skinseg":
            if any(part.startswith("_") for part in node.module.split(".")):
                found.append(f"line {node.lineno}: from {node.module}")
            found += [f"line {node.lineno}: from {node.module} import {a.name}" for a in node.names
                      if a.name.startswith("_")]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "skinseg" and any(part.startswith("_") for part in parts):
                    found.append(f"line {node.lineno}: import {alias.name}")
    for lineno, line in enumerate(source.splitlines(), 1):
        for m in re.finditer(r"\bskinseg(?:\.[A-Za-z]\w*)*\.(_\w+)", line):
            if not re.fullmatch(r"__\w+__", m.group(1)):
                found.append(f"line {lineno}: {m.group(0)}")
    return sorted(set(found))


@pytest.mark.parametrize("path", [pytest.param(p, id=p.name) for p in SCRIPTS])
def test_benchmarks_use_only_public_skinseg_names(path):
    assert private_skinseg_names(path) == []


def test_private_name_check_finds_private_imports(tmp_path):
    script = tmp_path / "bad.py"
    script.write_text(
        "from skinseg.inference import _flip_probas, FLIPS\n"
        "from skinseg._geometry import box_hw\n"
        "import skinseg._imagefile\n"
        "from skinseg.inference import (\n    prepare_input,\n    _FLIPS,\n)\n"
        "def f():\n    import skinseg\n    return skinseg.inference._predictor\n"
        "print(skinseg.__all__, skinseg.__version__)\n"
    )
    found = " | ".join(private_skinseg_names(script))
    for bad in ("_flip_probas", "skinseg._geometry", "import skinseg._imagefile", "_FLIPS",
                "inference._predictor"):
        assert bad in found
    assert "FLIPS," not in found
    assert "__all__" not in found and "__version__" not in found  # dunders are public


# ------------------------------------------------------------------ _common


ROWS = "id,split,label\na,train,nevus\nb,val,melanoma\nc,val,nevus\n"


def _dev_set(folder: Path, rows: str = ROWS) -> Path:
    folder.mkdir(parents=True)
    (folder / "manifest.csv").write_text(rows)
    return folder


def test_data_dir_honours_skinseg_data_dir(common, tmp_path, monkeypatch):
    lesions = _dev_set(tmp_path / "elsewhere" / "lesions")
    classes = _dev_set(tmp_path / "elsewhere" / "lesion-classes")
    monkeypatch.setenv("SKINSEG_DATA_DIR", str(lesions))
    assert common.data_dir() == lesions
    assert common.data_dir("lesions") == lesions
    assert common.data_dir("lesion-classes") == classes  # a sibling of the lesions folder


def test_data_dir_default_is_beside_the_repository(common, tmp_path, monkeypatch):
    monkeypatch.delenv("SKINSEG_DATA_DIR", raising=False)
    monkeypatch.setattr(common, "REPO_ROOT", tmp_path / "skinseg")
    lesions = _dev_set(tmp_path / "shared" / "data" / "lesions")
    assert common.data_dir() == lesions


def test_data_dir_missing_exits_with_a_clear_message(common, tmp_path, monkeypatch):
    lesions = _dev_set(tmp_path / "lesions")
    monkeypatch.setenv("SKINSEG_DATA_DIR", str(lesions))
    with pytest.raises(SystemExit) as exc:
        common.data_dir("lesion-classes")  # no sibling
    message = str(exc.value)
    assert "lesion-classes" in message and str(tmp_path / "lesion-classes") in message
    assert "SKINSEG_DATA_DIR" in message and "manifest.csv" in message

    monkeypatch.setenv("SKINSEG_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(SystemExit, match="SKINSEG_DATA_DIR"):
        common.data_dir()

    monkeypatch.delenv("SKINSEG_DATA_DIR")
    monkeypatch.setattr(common, "REPO_ROOT", tmp_path / "repo")
    with pytest.raises(SystemExit, match="not found"):
        common.data_dir()


def test_manifest_items_reads_splits_of_several_folders(common, tmp_path):
    a = _dev_set(tmp_path / "a")
    b = _dev_set(tmp_path / "b", "id,split,label\nd,val,seborrheic_keratosis\n")
    items = common.manifest_items([a, b], "val", label_column="label")
    assert [(it.id, it.label) for it in items] == [
        ("b", "melanoma"), ("c", "nevus"), ("d", "seborrheic_keratosis")]
    assert items[0].image == a / "images" / "b.jpg"
    assert [it.id for it in common.manifest_items(a, ("train", "val"))] == ["a", "b", "c"]
    with pytest.raises(SystemExit, match="error"):
        common.manifest_items(a, "test")  # no such rows
    with pytest.raises(SystemExit, match="error"):
        common.manifest_items(tmp_path / "missing", "val")


def test_read_rgb(common, tmp_path):
    import skinseg as ss

    image = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    ss.write_image(tmp_path / "x.png", image)
    np.testing.assert_array_equal(common.read_rgb(tmp_path / "x.png"), image)
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(SystemExit, match="cannot read"):
        common.read_rgb(tmp_path / "bad.jpg")


def test_psnr_known_answers(common):
    black = np.zeros((4, 6, 3), np.uint8)
    white = np.full((4, 6, 3), 255, np.uint8)
    assert common.psnr(black, white) == pytest.approx(0.0)  # no uint8 wrap-around
    assert common.psnr(black, black + 1) == pytest.approx(10 * np.log10(255.0**2))  # MSE 1: 48.13 dB
    assert common.psnr(black, black) == pytest.approx(10 * np.log10(255.0**2 / 1e-10))  # MSE floored
    noisy = black.copy()
    region = np.zeros((4, 6), bool)
    region[:2] = True
    noisy[region] = 16  # MSE 256 inside the region, 0 outside
    assert common.psnr(noisy, black, region) == pytest.approx(10 * np.log10(255.0**2 / 256))
    assert common.psnr(noisy, black) == pytest.approx(10 * np.log10(255.0**2 / 128))
    assert common.psnr(noisy, black, ~region) == pytest.approx(10 * np.log10(255.0**2 / 1e-10))
    assert isinstance(common.psnr(noisy, black), float)


def test_banner_prints_the_reproducing_command_machine_and_versions(common, capsys):
    script = str(BENCH / "inference_sweep.py")
    common.banner(libraries=("numpy",), argv=[script, "--model", "runs/a b", "--split", "val"])
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == "command: python benchmarks/inference_sweep.py --model 'runs/a b' --split val"
    assert lines[1].startswith("machine: ") and f"{os.cpu_count()} CPUs" in lines[1]
    assert "load average" in lines[1]
    assert lines[2].startswith("versions: python ") and "skinseg " in lines[2]
    assert f"numpy {np.__version__}" in lines[2]
    assert err == ""


def test_banner_warns_when_a_choice_is_made_on_test(common, capsys):
    common.banner(libraries=(), split="test", choosing=True, argv=["x.py"])
    assert "choices must be made on 'val'" in capsys.readouterr().err
    common.banner(libraries=(), split="val", choosing=True, argv=["x.py"])
    common.banner(libraries=(), split="test", choosing=False, argv=["x.py"])
    assert capsys.readouterr().err == ""
