"""Broadcasting beyond 6 dimensions: refused by the converter in one line naming the node and the limit.

TFLite Micro's broadcasting kernels (ADD, MUL, DIV, comparisons, SELECT_V2...) extend shapes to 6 dimensions;
micro refuses more, so a converted model with a 7-D broadcast used to end in an ArenaPlanError while it was
being sized (the onnx node tests ``test_sce_NCd1d2d3d4d5_*`` / ``test_nllloss_NCd1d2d3d4d5_*``: the loss's
negation is a MUL of a 7-D tensor by a scalar). A 6-D broadcast converts and micro equals tflite-micro on it
(``np.array_equal``), and so does a 7-D ADD of equal shapes (no broadcasting).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto as TP  # noqa: E402
from onnx import helper as h  # noqa: E402
from onnx import numpy_helper as nh  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tflite_builder import assert_exact  # noqa: E402

from converters.cli import main as edge_convert  # noqa: E402
from converters.pipeline import convert_model  # noqa: E402
from edge_runtime.errors import UnsupportedModelError  # noqa: E402

PROFILE = "rpi4-4gb"


def scaled(tmp: Path, shape: tuple[int, ...], const_shape: tuple[int, ...], op: str = "Mul") -> Path:
    """y = x (op) c, c a constant of ``const_shape`` (broadcast), as one named node."""
    c = np.full(const_shape, -1.5, np.float32)
    g = h.make_graph([h.make_node(op, ["x", "c"], ["y"], name="negate")], "scaled",
                     [h.make_tensor_value_info("x", TP.FLOAT, list(shape))],
                     [h.make_tensor_value_info("y", TP.FLOAT, list(shape))], [nh.from_array(c, "c")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    path = tmp / f"scaled_{len(shape)}d_{op}.onnx"
    onnx.save(m, str(path))
    return path


def _calib(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(0).normal(0, 1, (8, *shape)).astype(np.float32)


@pytest.mark.parametrize("op", ["Mul", "Add"])
def test_rank7_broadcast_refused_naming_node_and_limit(tmp_path: Path, op: str) -> None:
    shape = (1, 2, 3, 2, 2, 3, 2)
    with pytest.raises(UnsupportedModelError) as info:
        convert_model(scaled(tmp_path, shape, (1,), op), PROFILE, _calib(shape), tmp_path / "o", plot=False)
    msg = str(info.value)
    assert "\n" not in msg and "node 'negate'" in msg and "at rank 7" in msg and "at most 6 dimensions" in msg, msg


def test_rank7_refusal_is_one_cli_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    shape = (1, 2, 3, 2, 2, 3, 2)
    np.save(tmp_path / "calib.npy", _calib(shape))
    code = edge_convert(["convert", str(scaled(tmp_path, shape, (1, 1, 3, 1, 1, 1, 2))), "--profile", PROFILE,
                         "--calib", str(tmp_path / "calib.npy"), "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1, err
    assert "node 'negate' (MUL)" in err and "at rank 7" in err and "at most 6 dimensions" in err, err


def test_rank6_broadcast_converts_and_micro_equals_tflite_micro(tmp_path: Path) -> None:
    shape = (1, 2, 3, 2, 2, 3)
    res = convert_model(scaled(tmp_path, shape, (1, 1, 3, 1, 1, 3)), PROFILE, _calib(shape), tmp_path / "o",
                        plot=False, formats=("tflite",), report_samples=4)
    assert res.report["ops"].get("MUL") == 1
    assert_exact(Path(res.tflite_path), n=3)


def test_onnx_node_test_case_is_a_clean_refusal() -> None:
    """One of the twelve onnx node tests through the node benchmark's own measurement: a clean one-line row."""
    node_tests = pytest.importorskip("benchmarks.onnx_node_tests")
    from benchmarks.onnx_backend_models import _clean_refusal

    case = next((c for c in node_tests.load_cases() if c["name"] == "test_sce_NCd1d2d3d4d5_none_no_weight"), None)
    if case is None:
        pytest.skip("this onnx release has no test_sce_NCd1d2d3d4d5_none_no_weight")
    row = node_tests.measure_case(case)
    assert not row["ok"] and _clean_refusal(row), row
    assert row["error_type"] == "UnsupportedModelError" and "at most 6 dimensions" in row["error"], row


def test_rank7_without_broadcasting_still_converts(tmp_path: Path) -> None:
    """x + x at rank 7: equal shapes, no broadcasting, so TFLite Micro's plain elementwise path runs it."""
    shape = [1, 2, 3, 2, 2, 3, 2]
    g = h.make_graph([h.make_node("Add", ["x", "x"], ["y"], name="twice")], "twice",
                     [h.make_tensor_value_info("x", TP.FLOAT, shape)], [h.make_tensor_value_info("y", TP.FLOAT, shape)])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(tmp_path / "twice.onnx"))
    res = convert_model(tmp_path / "twice.onnx", PROFILE, _calib(tuple(shape)), tmp_path / "o", plot=False,
                        formats=("tflite",), report_samples=4)
    assert res.report["ops"] == {"ADD": 1}
    assert_exact(Path(res.tflite_path), n=3)
