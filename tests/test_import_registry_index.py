"""The importers' op registries are static indexes that import a handler's module on first lookup.

``MODULE_OPS`` of ``converters.importers.onnx_ops`` and ``tflite_ops`` must equal exactly what importing every
handler module gives
(each module's own ``REGISTRY``): a handler left out of the index would silently become "unsupported",
an op listed twice would be ambiguous. Looking up one op imports its module only.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

from converters.importers import onnx_ops, tflite_ops
from converters.importers.lazy_registry import LazyRegistry, op_index
from converters.importers.onnx_ops import REGISTRY

REPO = Path(__file__).resolve().parent.parent


def _handler_modules(package) -> dict[str, dict]:
    """Every module of ``package`` that defines its own ``REGISTRY``: name -> that REGISTRY."""
    found = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        if isinstance(getattr(module, "REGISTRY", None), dict):
            found[info.name] = module.REGISTRY
    return found


@pytest.mark.parametrize("package", [onnx_ops, tflite_ops], ids=["onnx_ops", "tflite_ops"])
def test_index_lists_every_handler_module_and_nothing_else(package):
    modules = _handler_modules(package)
    assert set(package.MODULE_OPS) == set(modules), \
        f"a handler module is missing from (or stale in) {package.__name__}.MODULE_OPS"
    for name, ops in package.MODULE_OPS.items():
        assert len(set(ops)) == len(ops), f"{name}: an op is listed twice"
        assert set(ops) == set(modules[name]), f"{package.__name__}.MODULE_OPS[{name!r}] differs from {name}.REGISTRY"


@pytest.mark.parametrize("package", [onnx_ops, tflite_ops], ids=["onnx_ops", "tflite_ops"])
def test_index_is_the_union_of_the_module_registries_without_overlap(package):
    union: dict[str, str] = {}
    for name, own in _handler_modules(package).items():
        for op in own:
            assert op not in union, f"{op} is registered by {union[op]} and {name}"
            union[op] = name
    assert package.INDEX == union
    eager = package.eager_registry()
    registry = package.REGISTRY
    assert set(registry) == set(eager) and len(registry) == len(eager)
    for op, handler in eager.items():
        assert op in registry
        assert registry[op] is handler, op
        assert registry.get(op) is handler, op


def test_registry_unknown_op_and_bad_index():
    for registry in (REGISTRY, tflite_ops.REGISTRY):
        assert "NotAnOp" not in registry
        assert registry.get("NotAnOp") is None
        with pytest.raises(KeyError):
            registry["NotAnOp"]
    with pytest.raises(RuntimeError, match="registered twice"):
        op_index({"conv": ("Conv",), "conv3d": ("Conv",)}, "ONNX importer")
    with pytest.raises(RuntimeError, match="does not have it"):  # a stale index line is named, not silently wrong
        LazyRegistry(onnx_ops.__name__, {"Relu": "lrn"}, "ONNX importer")["Relu"]


def _fresh_modules(code: str) -> set[str]:
    """The ``converters.*`` modules loaded after running ``code`` in a fresh interpreter."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint('\\n'.join(sys.modules))"],
                         capture_output=True, text=True, env=env, cwd=REPO, check=True).stdout
    return {m for m in out.split() if m.startswith("converters")}


def test_onnx_lookup_imports_only_that_handler_module():
    loaded = _fresh_modules("from converters.importers.onnx import SUPPORTED\n"
                            "from converters.importers.onnx_ops import REGISTRY\n"
                            "assert 'Relu' in SUPPORTED and 'Gemm' in REGISTRY\n"
                            "REGISTRY['Relu']")
    assert "converters.importers.onnx_ops.elementwise" in loaded
    for idle in ("spectral", "recurrent", "grid_sample", "scatter", "resize", "loop"):
        assert f"converters.importers.onnx_ops.{idle}" not in loaded, idle


def test_tflite_lookup_imports_only_that_handler_module():
    loaded = _fresh_modules("from converters.importers.tflite import SUPPORTED\n"
                            "from converters.importers.tflite_ops import REGISTRY\n"
                            "assert 'CONV_2D' in SUPPORTED and 'SVDF' in REGISTRY\n"
                            "REGISTRY['CONV_2D']")
    assert "converters.importers.tflite_ops.compute" in loaded
    for idle in ("rnn", "recurrent", "detection", "indexing", "dilated"):
        assert f"converters.importers.tflite_ops.{idle}" not in loaded, idle


def test_plain_cnn_import_skips_the_loop_qdq_and_function_passes():
    """A model with no Loop/Scan, Q/DQ, local function, unhandled op or Constant node does not import the
    prepare passes for them (converters.importers.prepare imports each when the model needs it)."""
    loaded = _fresh_modules("from converters.importers.onnx import import_onnx\n"
                            "g = import_onnx('converters/data/digits_cnn.onnx')\n"
                            "assert g.ops")
    assert "converters.importers.prepare" in loaded
    for idle in ("expand_functions", "loop_unroll", "qdq", "onnx_eval"):
        assert f"converters.importers.{idle}" not in loaded, idle
