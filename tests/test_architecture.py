"""The architecture stays easy to see.

- Dependencies point one way through the pipeline stages (no import of a later stage).
- No module imports a private (``_name``) attribute of another module that is itself public.
- The numpy-only stages never import torch; ``postprocess`` imports neither torch nor inference;
  the ONNX inference paths (the inference cores, the segment and classify runners, the CLI) run without torch.
- Folder runs have one skeleton: no import cycle inside ``skinseg.runs``, and no function there takes more
  than 8 parameters except the public entry points (``segment_folder``, ``classify_folder``).
- Every name that ``skinseg.__all__`` offered before the restructuring still imports.
- No module is longer than 650 lines.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "skinseg"

# stage of each top-level module or package: it may import only modules of the same or an earlier stage
STAGES = {
    "__init__": 0, "_types": 0, "errors": 0, "_checks": 0, "_geometry": 0, "_files": 0, "_deps": 0, "_figures": 0,
    "_lazy": 0, "_text": 0, "_runfile": 0,
    "io": 1, "_imagefile": 1, "_listing": 1,
    "preprocess": 2, "postprocess": 2, "quality": 2, "testing": 2, "augment": 2,
    "models": 3, "losses": 3, "data": 3,
    "inference": 4, "onnx_backend": 4,  # onnx_backend: deprecated alias of inference.onnx
    "training": 5,
    "metrics": 6, "crops": 6, "features": 6,
    "report": 7, "report_html": 7, "classify": 7,
    "runs": 8,
    "cli": 9, "__main__": 9,
}
NUMPY_ONLY = ["skinseg", "skinseg.io", "skinseg.preprocess", "skinseg.postprocess", "skinseg.metrics",
              "skinseg.report", "skinseg.report_html", "skinseg.testing", "skinseg.crops", "skinseg.features",
              "skinseg.augment", "skinseg.quality"]
# What ``skinseg.__all__`` held before the inference core / runs restructuring: it must keep working.
NAMES_BEFORE = [
    "__version__", "classify", "create_classifier", "create_segmenter", "crop_lesion", "denoise_median",
    "denoise_wiener", "detect_hair", "fill_holes", "keep_largest_component", "lesion_features", "list_images",
    "list_segmenters", "load_classifier", "load_segmenter", "pair_images_and_masks", "postprocess_mask",
    "predict_proba", "predict_proba_batch", "Preprocess", "PreprocessConfig", "read_image", "read_mask",
    "remove_hair", "save_checkpoint", "save_classifier", "segment", "SegmenterConfig", "SegmenterEnsemble",
    "threshold", "write_image", "write_mask",
]


def _module_files():
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG)
        yield rel.parts[0].removesuffix(".py"), rel, path


def _dotted(rel: Path) -> list[str]:
    """Package path of a file: skinseg/runs/segment.py -> ['runs', 'segment']; __init__ -> the package."""
    parts = list(rel.with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imports(path: Path, rel: Path):
    """(absolute module path inside skinseg as a list, imported names) of every skinseg import in a file."""
    tree = ast.parse(path.read_text())
    package = list(rel.parts[:-1])  # the package this file lives in
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module and (node.module == "skinseg" or node.module.startswith("skinseg.")):
                    yield node.module.split(".")[1:], [a.name for a in node.names]
                continue
            up = node.level - 1
            if up > len(package):
                continue
            base = package[: len(package) - up] if up else package
            yield base + (node.module.split(".") if node.module else []), [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("skinseg."):
                    yield alias.name.split(".")[1:], []


def _imported_stages(path: Path, rel: Path) -> set[str]:
    found = set()
    for module, names in _imports(path, rel):
        if module:
            found.add(module[0])
        else:  # "from . import x" at the package root
            found.update(names)
    return found


def test_every_module_has_a_stage():
    assert {top for top, _, _ in _module_files()} <= set(STAGES)


@pytest.mark.parametrize("top,rel,path", list(_module_files()), ids=lambda v: str(v) if isinstance(v, Path) else "")
def test_dependencies_point_one_way(top, rel, path):
    if top == "__init__":
        return  # the package root re-exports lazily
    bad = {m for m in _imported_stages(path, rel) if m in STAGES and STAGES[m] > STAGES[top]}
    assert not bad, f"{rel} (stage {STAGES[top]}) imports later stages {sorted(bad)}"


@pytest.mark.parametrize("top,rel,path", list(_module_files()), ids=lambda v: str(v) if isinstance(v, Path) else "")
def test_no_private_names_from_public_modules(top, rel, path):
    """``from .x import _y`` is allowed only when ``x`` is itself private (``_imagefile``, ``_checks``, ...)."""
    own = _dotted(rel)
    bad = []
    for module, names in _imports(path, rel):
        if module == own or any(part.startswith("_") for part in module):
            continue  # the module itself, or a private module
        bad += [f"{'.'.join(module) or 'skinseg'}.{n}" for n in names if n.startswith("_") and n != "__version__"]
    assert not bad, f"{rel} imports private names of public modules: {bad}"


def test_the_architecture_check_sees_private_imports(tmp_path):
    """The check above would catch ``from ..inference import _forward_proba`` (the old folder runner's import)."""
    path = tmp_path / "segment.py"
    path.write_text("from ..inference import _forward_proba, predict_proba\nfrom .._checks import check_rgb_image\n")
    found = [(m, n) for m, n in _imports(path, Path("runs/segment.py"))]
    assert found == [(["inference"], ["_forward_proba", "predict_proba"]), (["_checks"], ["check_rgb_image"])]


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_numpy_stages_do_not_import_torch():
    code = "import sys\n" + "".join(f"import {m}\n" for m in NUMPY_ONLY) + "print('torch' in sys.modules)"
    assert _run(code) == "False"


def test_postprocess_imports_neither_torch_nor_inference():
    code = "import sys\nimport skinseg.postprocess\nprint('torch' in sys.modules, 'skinseg.inference' in sys.modules)"
    assert _run(code) == "False False"


def test_onnx_inference_path_does_not_import_torch():
    code = ("import sys\nimport skinseg.inference, skinseg.runs.segment, skinseg.models.checkpoint, skinseg.cli\n"
            "import skinseg.classify, skinseg.runs.classify, skinseg.runs.ray_engine, skinseg.runs.skeleton\n"
            "from skinseg.models import SegmenterConfig, checkpoint_fingerprint\n"
            "checkpoint_fingerprint('default')\nprint('torch' in sys.modules)")
    assert _run(code) == "False"


@pytest.mark.parametrize("name", NAMES_BEFORE)
def test_every_public_name_from_before_still_imports(name):
    import skinseg

    assert name in skinseg.__all__ or name in dir(skinseg)
    assert getattr(skinseg, name) is not None


def test_no_module_is_over_650_lines():
    long = {str(p.relative_to(PKG)): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > 650}
    assert not long, f"split these modules by responsibility: {long}"


def _runs_imports() -> dict[str, set[str]]:
    """skinseg.runs module -> the skinseg.runs modules it imports (at the top or inside functions)."""
    graph: dict[str, set[str]] = {}
    for path in sorted((PKG / "runs").glob("*.py")):
        rel = path.relative_to(PKG)
        graph[path.stem] = {module[1] for module, _ in _imports(path, rel)
                            if len(module) > 1 and module[0] == "runs" and module[1] != path.stem}
    return graph


def test_no_import_cycle_inside_runs():
    graph = _runs_imports()
    assert "journal" in graph["segment"]  # the check sees the imports between runs modules

    def cycle_from(node: str, path: list[str]) -> list[str] | None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                return path[path.index(nxt):] + [nxt]
            found = cycle_from(nxt, path + [nxt])
            if found:
                return found
        return None

    cycles = [c for node in graph if (c := cycle_from(node, [node]))]
    assert not cycles, f"import cycles inside skinseg.runs: {cycles[0]}"


RUNS_ENTRY_POINTS = {"segment_folder", "classify_folder"}
RUNS_RECORDS = {"FolderRunResult"}  # the public summary a run returns: a record, not an options list


def test_no_function_in_runs_takes_more_than_8_parameters():
    """One skeleton: the repeated 22-parameter signature and the 12- and 16-parameter helpers are gone."""
    long = {}
    for path in sorted((PKG / "runs").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name not in RUNS_ENTRY_POINTS:
                a = node.args
                n = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) + bool(a.vararg) + bool(a.kwarg)
                n -= bool(a.args and a.args[0].arg in ("self", "cls"))
                if n > 8:
                    long[f"{path.name}:{node.name}"] = n
            if isinstance(node, ast.ClassDef) and any(
                    isinstance(d, ast.Name | ast.Call) and "dataclass" in ast.unparse(d) for d in node.decorator_list):
                fields = [b for b in node.body if isinstance(b, ast.AnnAssign)]
                if len(fields) > 8 and node.name not in RUNS_RECORDS:
                    long[f"{path.name}:{node.name} (dataclass)"] = len(fields)
    assert not long, f"split these signatures (a job, an engine, an options object): {long}"
