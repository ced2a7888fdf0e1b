"""ONNX export (parity with torch) and the ONNX Runtime backend giving torch's masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

import skinseg.inference.onnx as onnx_mod  # noqa: E402
from skinseg.cli import main  # noqa: E402
from skinseg.errors import ConfigError  # noqa: E402
from skinseg.inference import OnnxBackend, Predictor, export_onnx, predict_proba, predict_proba_batch, segment  # noqa: E402
from skinseg.io import read_mask, write_image  # noqa: E402
from skinseg.testing import synthetic_lesion  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(model, checkpoint dir, exported .onnx) for a tiny U-Net."""
    from skinseg.models import create_segmenter, save_checkpoint

    torch.manual_seed(0)
    model = create_segmenter(
        "unet", encoder_name="resnet18", encoder_depth=3, decoder_channels=(32, 16, 8), input_size=64
    )
    root = tmp_path_factory.mktemp("onnx")
    ckpt = save_checkpoint(model, root / "ckpt")
    path = root / "tiny.onnx"
    diff = export_onnx(model, path)
    assert diff < 1e-3
    return model, ckpt, path


def test_export_parity_and_config(tiny) -> None:
    model, _, path = tiny
    onnx_model = OnnxBackend(path, threads=1)
    assert onnx_model.config == model.config
    assert onnx_mod.onnx_parity(model, onnx_model, sizes=((96, 64), (32, 160)), batch=3) < 1e-3
    logits = onnx_model.predict_logits(np.zeros((3, 3, 96, 64), np.float32))
    assert logits.shape == (3, 1, 96, 64)  # dynamic batch, height and width


def test_predict_proba_accepts_the_onnx_model(tiny) -> None:
    model, _, path = tiny
    onnx_model = OnnxBackend(path)
    images = [synthetic_lesion((65, 47), rng=0)[0], synthetic_lesion((40, 90), rng=1)[0]]
    for want, got in zip(
        predict_proba_batch(model, images), predict_proba_batch(onnx_model, images), strict=True
    ):
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-3)
    np.testing.assert_allclose(
        predict_proba(onnx_model, images[0], tta=True), predict_proba(model, images[0], tta=True), atol=1e-3
    )
    assert segment(onnx_model, images[0]).shape == (65, 47)
    with pytest.raises(ConfigError, match="cpu"):
        Predictor(onnx_model, device="cuda")


def test_fp32_onnx_runtime_agrees_with_torch_to_1e4(tiny) -> None:
    """The backends agree: the same prepared batch through torch and ONNX Runtime, probabilities to 1e-4."""
    model, _, path = tiny
    images = [synthetic_lesion((90, 120), rng=i)[0] for i in range(3)]
    torch_pred, onnx_pred = Predictor(model, tta=True), Predictor(OnnxBackend(path), tta=True)
    for a, b in zip(torch_pred.predict_proba_batch(images), onnx_pred.predict_proba_batch(images), strict=True):
        assert np.abs(a - b).max() < 1e-4
    assert onnx_pred.backend.fingerprint == torch_pred.backend.fingerprint  # the same model in run journals


def test_export_cli_prints_parity(tiny, tmp_path: Path, capsys) -> None:
    _, ckpt, _ = tiny
    out = tmp_path / "m.onnx"
    assert main(["export-onnx", str(ckpt), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["max_abs_prob_diff"] < 1e-3
    assert "parity: max |p_onnx - p_torch|" in captured.err
    assert OnnxBackend(out).config.input_size == 64
    assert main(["export-onnx", str(ckpt), "-o", str(out)]) == 2  # exists: needs --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export-onnx", str(ckpt), "-o", str(out), "--overwrite"]) == 0


def test_deprecated_onnx_backend_module_still_works() -> None:
    import importlib
    import sys

    sys.modules.pop("skinseg.onnx_backend", None)
    with pytest.warns(FutureWarning, match="skinseg.inference"):
        old = importlib.import_module("skinseg.onnx_backend")
    assert old.OnnxSegmenter is OnnxBackend and old.export_onnx is export_onnx


def test_failed_parity_writes_nothing(tiny, tmp_path: Path, monkeypatch, capsys) -> None:
    _, ckpt, _ = tiny
    monkeypatch.setattr(onnx_mod, "onnx_parity", lambda *a, **k: 0.5)
    out = tmp_path / "bad.onnx"
    assert main(["export-onnx", str(ckpt), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "parity check" in err and "0.5" in err
    assert not out.exists() and not list(tmp_path.glob(".*tmp"))


def test_segment_onnx_backend_matches_torch(tiny, tmp_path: Path, monkeypatch) -> None:
    _, ckpt, _ = tiny
    monkeypatch.setenv("SKINSEG_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "in"
    for i in range(3):
        write_image(src / f"img{i}.png", synthetic_lesion((50 + 9 * i, 70), rng=i)[0])
    args = ["--model", str(ckpt), "--quiet", "--no-overlay"]
    assert main(["segment", str(src), "-o", str(tmp_path / "torch"), *args]) == 0
    assert main(["segment", str(src), "-o", str(tmp_path / "onnx"), "--backend", "onnx", *args]) == 0
    cached = list((tmp_path / "cache").glob("*.onnx"))
    assert len(cached) == 1  # in the user cache, keyed by the model's fingerprint; never in the output folder
    assert not list((tmp_path / "onnx").rglob("*.onnx"))
    for i in range(3):
        want = read_mask(tmp_path / "torch" / f"img{i}_segmentation.png")
        got = read_mask(tmp_path / "onnx" / f"img{i}_segmentation.png")
        assert got.shape == want.shape and (got == want).mean() >= 0.999
    settings = json.loads((tmp_path / "onnx" / "run.json").read_text())["settings"]
    assert settings["backend"] == "onnx"
    # a rerun uses the cached export
    monkeypatch.setattr(onnx_mod, "export_onnx_bytes", lambda *a, **k: pytest.fail("exported again"))
    assert main(["segment", str(src), "-o", str(tmp_path / "onnx"), "--backend", "onnx", *args]) == 0
    assert main(["segment", str(src), "-o", str(tmp_path / "o3"), "--backend", "onnx", "--device", "cuda", *args]) == 2


def test_checkpoint_model_onnx_is_used(tiny, tmp_path: Path, monkeypatch) -> None:
    import shutil

    _, ckpt, path = tiny
    local = tmp_path / "ckpt"
    shutil.copytree(ckpt, local)
    shutil.copy(path, local / "model.onnx")
    monkeypatch.setenv("SKINSEG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(onnx_mod, "export_onnx_bytes", lambda *a, **k: pytest.fail("should use model.onnx"))
    src = tmp_path / "in"
    write_image(src / "a.png", synthetic_lesion((40, 50), rng=3)[0])
    out = tmp_path / "out"
    assert main(["segment", str(src), "-o", str(out), "--model", str(local), "--backend", "onnx", "--quiet"]) == 0
    assert not (tmp_path / "cache").exists()


def test_quantize_onnx_gives_an_int8_model_that_keeps_the_metadata(tiny, tmp_path: Path) -> None:
    from skinseg.inference.quantize import calibration_batches, quantize_onnx

    model, _, path = tiny
    fp32 = path.read_bytes()
    images = [synthetic_lesion((64, 80), rng=i)[0] for i in range(4)]
    batches = calibration_batches(Predictor(model), images, batch_size=8)
    assert sum(len(b) for b in batches) == 16  # 4 images x 4 flips
    int8 = OnnxBackend(quantize_onnx(fp32, batches))
    ref = OnnxBackend(fp32)
    assert int8.precision == "int8" and ref.precision == "fp32"
    assert int8.fingerprint == ref.fingerprint and int8.config == ref.config
    x = batches[0]
    assert np.abs(int8.run(x) - ref.run(x)).max() < 0.15  # quantized, yet the same model


def test_concurrent_cold_cache_exports_are_safe_and_keyed(tiny, tmp_path: Path) -> None:
    """Two runs that both find the cache empty both export; the atomic rename leaves one good file."""
    import threading

    from skinseg.inference.onnx import load_onnx_for_checkpoint, onnx_cache_path
    from skinseg.models import checkpoint_fingerprint

    _, ckpt, _ = tiny
    cache = tmp_path / "cache"
    backends, errors = [], []

    def run() -> None:
        try:
            b = load_onnx_for_checkpoint(ckpt, cache_dir=cache)
            b.run(np.zeros((1, 3, 64, 64), np.float32))  # the deferred export happens here
            backends.append(b)
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(backends) == 2
    files = sorted(p.name for p in cache.iterdir())
    assert files == [onnx_cache_path(cache, checkpoint_fingerprint(ckpt)).name]  # keyed; no temp files left
    assert OnnxBackend(cache / files[0]).source_fingerprint == checkpoint_fingerprint(ckpt)


def test_a_refused_rerun_does_not_export(tiny, tmp_path: Path, monkeypatch, capsys) -> None:
    _, ckpt, _ = tiny
    monkeypatch.setenv("SKINSEG_CACHE_DIR", str(tmp_path / "cache"))
    src, out = tmp_path / "in", tmp_path / "out"
    write_image(src / "a.png", synthetic_lesion((40, 50), rng=3)[0])
    assert main(["segment", str(src), "-o", str(out), "--model", str(ckpt), "--backend", "torch", "--quiet"]) == 0
    monkeypatch.setattr(onnx_mod, "export_onnx_bytes", lambda *a, **k: pytest.fail("exported for a refused rerun"))
    assert main(["segment", str(src), "-o", str(out), "--model", str(ckpt), "--backend", "onnx", "--quiet"]) == 2
    assert "backend: 'torch' -> 'onnx'" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()


def test_export_cli_int8_needs_calibration_images(tiny, tmp_path: Path, capsys) -> None:
    _, ckpt, _ = tiny
    assert main(["export-onnx", str(ckpt), "-o", str(tmp_path / "m.onnx"), "--int8"]) == 2
    assert "--calibration" in capsys.readouterr().err
    cal = tmp_path / "cal"
    for i in range(3):
        write_image(cal / f"c{i}.png", synthetic_lesion((64, 80), rng=i)[0])
    assert main(["export-onnx", str(ckpt), "-o", str(tmp_path / "m.onnx"), "--int8", "--calibration", str(cal)]) == 0
    assert OnnxBackend(tmp_path / "m.onnx").precision == "int8"


def test_export_cli_refuses_a_folder_or_an_existing_file_before_exporting(tiny, tmp_path: Path, capsys,
                                                                         monkeypatch) -> None:
    """Issue 16 (12): export-onnx overwrote an existing file and failed on a folder only after the export."""
    _, ckpt, _ = tiny
    monkeypatch.setattr(onnx_mod, "export_onnx_bytes", lambda *a, **k: pytest.fail("exported before checking -o"))
    assert main(["export-onnx", str(ckpt), "-o", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    existing = tmp_path / "m.onnx"
    existing.write_bytes(b"keep me")
    assert main(["export-onnx", str(ckpt), "-o", str(existing)]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "[Errno" not in err
    assert existing.read_bytes() == b"keep me"
