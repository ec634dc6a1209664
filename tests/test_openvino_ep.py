"""ONNX Runtime's OpenVINO execution provider end to end (issue 20), in a venv of its own.

``onnxruntime-openvino`` and ``onnxruntime`` both install the module ``onnxruntime``, so the
OpenVINO runs happen in a separate venv that ``benchmarks/_openvino_venv.py`` builds once
under ``.cache/openvino-venv`` (about 40 s with network; skips without it, fails under
CI=true). The five MLPerf Tiny models are converted here by our converter to int8 QDQ ONNX
for the ``intel-n100`` profile (str_ww_ref_model, shipped only as int8, is dequantized
to a float ONNX first: ``benchmarks/_openvino_models.py``), then run in that venv on the OpenVINO EP (OpenVINO's CPU
device: this machine has no Intel GPU) and on ORT's CPU EP.

References: ORT's CPU EP (optimised, as users run it) and ORT's CPU EP with graph
optimisations off (plain QDQ semantics: DequantizeLinear, float op, QuantizeLinear).
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks._openvino_models import NOT_CONVERTIBLE, convert_all  # noqa: E402
from benchmarks._openvino_venv import OpenVinoVenvError, child_env, ensure_venv  # noqa: E402
from edge_runtime.backends.accelerators import placement_warning  # noqa: E402
from edge_runtime.backends.onnx import model_node_counts, parse_profile, placement_from_kernels  # noqa: E402

OV = "OpenVINOExecutionProvider"
CPU = "CPUExecutionProvider"


def _cpu_flags() -> set[str]:
    """This machine's CPU feature flags (/proc/cpuinfo), empty where it cannot be read."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


#: OpenVINO's CPU plugin picks its int8 convolution kernels by instruction set, and on a CPU with AVX-512 VNNI
#: (measured on an AMD EPYC host with AVX-512 VNNI and BF16) its ResNet-8 logits sit farther from ORT's CPU EP and
#: from a float64 evaluation of the QDQ graph than on the AVX2 host the first bounds were measured on: 44 % of
#: logits within 1 LSB of the CPU EP (96-97 % there), at most 9 LSB (3), 9 LSB from the float64 QDQ reference
#: against the CPU EP's 3, top-1 46/50 (50/50). No provider option changes it (precision FP32/ACCURACY,
#: INFERENCE_PRECISION_HINT f32, EXECUTION_MODE_HINT ACCURACY: identical; only LP_TRANSFORMS_MODE NO, f32
#: convolutions, brings 92 %). The other four models agree as before on both hosts.
VNNI = "avx512_vnni" in _cpu_flags()
#: ResNet-8 bounds: (share of logits within 1 LSB of the CPU EP, largest LSB difference, top-1 agreements missed)
RESNET_BOUNDS = (0.35, 12, 6) if VNNI else (0.90, 8, 1)


@pytest.fixture(scope="session")
def ov_python() -> Path:
    """The onnxruntime-openvino venv's interpreter (built on first use)."""
    if platform.machine() != "x86_64" or not sys.platform.startswith("linux"):
        pytest.skip("onnxruntime-openvino wheels are for x86-64 Linux (and Windows) only")
    try:
        return ensure_venv(log=lambda msg: print(msg, file=sys.stderr))
    except OpenVinoVenvError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the onnxruntime-openvino venv could not be built, and CI=true: {exc}")
        pytest.skip(f"the onnxruntime-openvino venv could not be built (no network?): {exc}")


def _in_venv(py: Path, args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(py), *args], check=False, env=child_env(), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def mlperf_runs(ov_python, mlperf_models, tmp_path_factory) -> list[dict]:
    """Each converted model's record from benchmarks/_openvino_run.py, plus its node count from the file."""
    out = tmp_path_factory.mktemp("openvino")
    conv = convert_all(mlperf_models, out, n_test=50)
    spec = [{"name": c.name, "onnx": c.onnx, "inputs": c.inputs, "runs": 20, "compare_onnx": c.logits_onnx}
            for c in conv]
    (out / "spec.json").write_text(json.dumps(spec))
    r = _in_venv(ov_python, ["-m", "benchmarks._openvino_run", str(out / "spec.json"), str(out / "out.json")])
    assert r.returncode == 0, r.stderr[-3000:]
    recs = json.loads((out / "out.json").read_text())
    for rec, c in zip(recs, conv):
        rec["model_nodes"] = sum(model_node_counts(c.onnx).values())
    return recs


def test_mlperf_models_run_fully_on_the_openvino_ep(mlperf_runs):
    assert [r["name"] for r in mlperf_runs] == ["kws", "ad01", "vww", "resnet", "sww"] and not NOT_CONVERTIBLE
    for r in mlperf_runs:
        ov, cpu = r["ov"], r["cpu"]
        print(f"{r['name']}: {ov['accelerator']}, nodes {ov['node_placement']}, kernels {ov['kernels_run']}, "
              f"top-1 agreement {r['top1_agree']}/{r['n']}, OpenVINO {r['ov_ms']:.3f} ms, CPU EP {r['cpu_ms']:.3f} ms")
        assert ov["providers"][0] == OV and "via OpenVINO" in ov["accelerator"]
        # the profile's GPU entry first (absent here: no Intel GPU), then OpenVINO on the CPU
        assert ov["provider_options"]["device_type"] in ("GPU", "CPU") and ov["provider_options"]["precision"] == "ACCURACY"
        # read from ORT's profile: every one of the file's nodes went to OpenVINO, as one fused kernel
        assert ov["node_placement"] == {OV: r["model_nodes"], CPU: 0} and r["model_nodes"] > 50
        assert ov["kernels_run"] == {OV: 1} and ov["cpu_ops"] == {}
        assert cpu["providers"] == [CPU] and cpu["node_placement"] == {CPU: r["model_nodes"]}
        missed = RESNET_BOUNDS[2] if r["name"] == "resnet" else 1
        assert r["top1_agree"] >= r["n"] - missed, (r["name"], r["top1_agree"], "AVX-512 VNNI" if VNNI else "")


def test_outputs_within_one_lsb_of_ort_cpu(mlperf_runs):
    """Each model's last int8 tensor before its softmax (or its output) within 1 LSB of ORT's CPU EP.

    Softmax outputs are compared by top-1 only: a 1-LSB step in the int8 logits moves the int8
    probabilities by several LSBs. pretrainedResnet is the exception: its 1-LSB near-tie differences
    in early convolutions grow through 9 convolutions and 3 residual adds to 3 LSB at the logits
    (ORT's CPU EP is 3-4 LSB from a float64 QDQ evaluation there too, and plain QDQ 3 LSB from the
    CPU EP, through its float AveragePool); its bound is the measured distribution (96-97% of logits
    within 1 LSB; at least 90% asserted), and on a CPU with AVX-512 VNNI, where OpenVINO's int8 kernels land
    farther from the float64 QDQ reference, the distribution measured there (:data:`VNNI`). The breakdown:
    test_divergence_is_near_tie_rounding_...
    """
    for r in mlperf_runs:
        for o in r["outputs"]:
            assert o["dtype"] == "int8"
            print(f"{r['name']} {o['name']}: OpenVINO vs ORT CPU max {o['ov_vs_cpu']} LSB "
                  f"({o['ov_vs_cpu_within_1']:.1%} within 1 LSB); ORT CPU vs QDQ reference {o['cpu_vs_ref']} LSB, "
                  f"OpenVINO vs QDQ reference {o['ov_vs_ref']} LSB")
        last = r["outputs"][-1]  # with a softmax: output 0 is the softmax, output 1 the int8 logits feeding it
        if r["name"] == "resnet":
            share, most, _ = RESNET_BOUNDS
            assert last["ov_vs_cpu_within_1"] >= share and last["ov_vs_cpu"] <= most, (last, RESNET_BOUNDS)
        else:
            assert last["ov_vs_cpu"] <= 1, (r["name"], last)


@pytest.fixture(scope="module")
def divergence_rows(ov_python, mlperf_models, tmp_path_factory) -> tuple[list[dict], list[dict]]:
    """``benchmarks.openvino_ep --divergence`` on 10 inputs per model, without the remedy options and without VWW
    (its 31 quantized ops hold no op kind the others lack; it would double this test's time)."""
    from benchmarks.openvino_ep import divergence

    return divergence(mlperf_models, tmp_path_factory.mktemp("divergence"), n=10, variants=False,
                      names=("kws", "ad01", "resnet", "sww"))


def test_divergence_is_near_tie_rounding_in_conv_and_gemm_amplified_by_softmax(divergence_rows):
    """Why OpenVINO is not within 1 LSB of ORT's CPU EP at every output (benchmarks/_openvino_divergence.py).

    Fed the same int8 inputs, each quantized op on either EP is within 1 LSB of a float64 evaluation of the QDQ
    semantics, and every Conv/Gemm mismatch is an exact value within 1e-4 of a .5 rounding boundary but not on it
    (float32 rounding inside the kernels, not a different formula or tie rule); Add, AveragePool and Reshape are
    exact on OpenVINO.
    The first tensor where the two EPs differ is a Conv/Gemm output by 1 LSB (or the residual Add a Conv is fused
    into, by that flip scaled). The softmax of every EP is exact on
    its own logits, so an output difference is a logit difference amplified (one logit LSB moves a probability by up
    to 256 * scale / 4 output LSBs). ORT's CPU softmax is only exact because our writer's second Q on the graph output
    stops onnxruntime 1.24.1 from fusing QLinearSoftmax, whose int8 kernel wraps 1.0 to -128 (onnxruntime#29727).
    """
    rows, totals = divergence_rows
    assert [r["model"] for r in rows] == ["kws_ref_model_float32.tflite", "ad01_fp32.tflite", "pretrainedResnet.tflite",
                                          "str_ww_ref_model.tflite"]
    kinds = {t["kind"]: t for t in totals}
    assert {"Conv", "Gemm", "Add", "AveragePool", "Softmax"} <= set(kinds)
    for kind in ("Conv", "Gemm"):
        for ep in ("ov", "cpu", "ref"):
            t = kinds[kind][ep]
            assert t["lsb"] <= 1 and t["max_tie_distance"] < 1e-4 and t["exact_ties"] == 0, (kind, ep, t)
    for ep in ("ov", "cpu", "ref"):  # rare: a few per million outputs (20 M Conv outputs at n=50: OV 55, CPU 11)
        assert kinds["Conv"][ep]["mismatches"] <= 1e-5 * kinds["Conv"]["size"], (ep, kinds["Conv"])
    for kind in ("Add", "AveragePool", "Reshape"):
        assert kinds[kind]["ov"]["mismatches"] == 0, (kind, kinds[kind])
    assert kinds["Softmax"]["ov"]["mismatches"] == 0
    for r in rows:
        f = r["first_divergence"]
        print(f"{r['model']}: first OV != CPU {f}; OV vs CPU {r['ov_vs_cpu']}; OV vs tflite-micro {r['ov_vs_micro']}; "
              f"CPU vs tflite-micro {r['cpu_vs_micro']}")
        # a Conv/Gemm by 1 LSB; or, where OpenVINO fuses a Conv into the residual Add it feeds, that Add: the conv's
        # 1-LSB flip times the ratio of the two scales (ResNet-8: 0.094 / 0.050, so 2 LSB)
        assert f is None or (f["op"].split("+")[0] in ("Conv", "Gemm") and f["lsb"] == 1) or \
            (f["op"].split("+")[0] == "Add" and f["lsb"] <= 2), f
        if "softmax_vs_float64" in r:
            assert r["softmax_vs_float64"] == {"ov": 0, "cpu": 0, "ref": 0}, r["softmax_vs_float64"]
        # both EPs are about as far from the int8 .tflite on tflite-micro (its fixed-point requantization)
        assert abs(r["ov_vs_micro"]["logits"] - r["cpu_vs_micro"]["logits"]) <= 1, r


FALLBACK_SCRIPT = r"""
import json, logging, sys
import edge_runtime
from edge_runtime.errors import AcceleratorUnavailableError
records = []
class Keep(logging.Handler):
    def emit(self, rec): records.append(rec.getMessage())
logging.getLogger("edge_runtime").addHandler(Keep())
logging.getLogger("edge_runtime").setLevel(logging.WARNING)
out = {}
for name in ("partial", "none"):
    records.clear()
    m = edge_runtime.load(sys.argv[1 if name == "partial" else 2], profile="intel-n100")
    out[name] = {k: m.info.get(k) for k in ("providers", "accelerator", "fallback_reason", "node_placement",
                                            "kernels_run", "cpu_ops")}
    out[name]["logs"] = list(records)
    import numpy as np
    out[name]["y"] = m.run(np.array([[-1.0, 3.0, 2.0, 0.5]], np.float32))[0].tolist()
try:
    edge_runtime.load(sys.argv[2], profile="intel-n100", require_accelerator=True)
    out["require"] = None
except AcceleratorUnavailableError as exc:
    out["require"] = str(exc)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def hardmax_models(tmp_path_factory) -> tuple[Path, Path]:
    """Relu -> Hardmax -> Relu (OpenVINO's ONNX frontend has no Hardmax) and a lone Hardmax."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    d = tmp_path_factory.mktemp("hardmax")

    def save(nodes: list, name: str) -> Path:
        g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        onnx.save(m, str(d / f"{name}.onnx"))
        return d / f"{name}.onnx"

    partial = save([helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Hardmax", ["a"], ["b"]),
                    helper.make_node("Relu", ["b"], ["y"])], "partial")
    lone = save([helper.make_node("Hardmax", ["x"], ["y"])], "lone")
    return partial, lone


def test_partial_placement_warns_and_unplaceable_model_falls_back(ov_python, hardmax_models):
    partial, lone = hardmax_models
    r = _in_venv(ov_python, ["-c", FALLBACK_SCRIPT, str(partial), str(lone)], timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.strip() == ""  # onnxruntime's native error lines are read, not printed
    out = json.loads(r.stdout.strip().splitlines()[-1])
    p = out["partial"]
    assert p["providers"][0] == OV and "via OpenVINO" in p["accelerator"]
    assert p["node_placement"] == {OV: 1, CPU: 2} and p["cpu_ops"] == {"Relu": 1, "Hardmax": 1}
    assert p["kernels_run"] == {OV: 1, CPU: 2}
    assert len(p["logs"]) == 1 and "mostly on the CPU" in p["logs"][0] and "Hardmax x1" in p["logs"][0]
    assert p["y"] == [[0.0, 1.0, 0.0, 0.0]]
    n = out["none"]
    assert n["providers"] == [CPU] and n["accelerator"] is None and n["node_placement"] == {CPU: 1}
    assert "Intel UHD Graphics via OpenVINO" in n["fallback_reason"]  # tried first; no Intel GPU here
    assert "took none of the model's 1 nodes (Hardmax x1)" in n["fallback_reason"]
    assert len(n["logs"]) == 1 and n["logs"][0].startswith("accelerator unavailable, running on the CPU")
    assert n["y"] == [[0.0, 1.0, 0.0, 0.0]]
    assert out["require"].startswith("an accelerator is required but none can be used") and "Hardmax" in out["require"]


def test_bench_cli_reports_placement_and_require_accelerator(ov_python, hardmax_models):
    partial, lone = hardmax_models
    r = _in_venv(ov_python, ["-m", "edge_runtime.cli", "bench", str(partial), "--profile", "intel-n100",
                             "--runs", "5", "--json"], timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)
    assert res["node_placement"] == {OV: 1, CPU: 2} and res["cpu_ops"] == {"Relu": 1, "Hardmax": 1}
    assert res["kernels_run"] == {OV: 1, CPU: 2} and "via OpenVINO" in res["accelerator"]
    assert "Hardmax x1" in r.stderr
    r = _in_venv(ov_python, ["-m", "edge_runtime.cli", "bench", str(lone), "--profile", "intel-n100",
                             "--require-accelerator"], timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "an accelerator is required" in r.stderr and "took none of the model's 1 nodes" in r.stderr


# ------------------------------------------------------------------ parsing, without the OpenVINO venv

def test_parse_profile_counts_kernels_per_provider():
    events = [
        {"cat": "Session", "name": "model_loading_uri", "args": {}},
        {"cat": "Node", "name": "Relu_fence_before", "args": {"op_name": "Relu"}},
        {"cat": "Node", "name": "Relu_kernel_time", "args": {"provider": CPU, "op_name": "Relu"}},
        {"cat": "Node", "name": "OpenVINOExecutionProvider_OpenVINO-EP-subgraph_1_0_kernel_time",
         "args": {"provider": OV, "op_name": "OpenVINO-EP-subgraph_1"}},
        {"cat": "Node", "name": "_kernel_time", "args": {"provider": CPU, "op_name": "Hardmax"}},
    ]
    kernels = parse_profile(events)
    assert kernels == [(CPU, "Relu"), (OV, "OpenVINO-EP-subgraph_1"), (CPU, "Hardmax")]
    place = placement_from_kernels(kernels, OV, {"Relu": 3, "Hardmax": 1, "Conv": 2})
    assert place["node_placement"] == {OV: 4, CPU: 2} and place["cpu_ops"] == {"Relu": 1, "Hardmax": 1}
    assert place["kernels_run"] == {CPU: 2, OV: 1}
    none = placement_from_kernels([(CPU, "Hardmax")], OV, {"Hardmax": 1})
    assert none["node_placement"] == {OV: 0, CPU: 1}
    with pytest.raises(ValueError, match="names no provider"):
        parse_profile([{"cat": "Node", "name": "x_kernel_time", "args": {}}])
    with pytest.raises(ValueError, match="JSON list"):
        parse_profile({"traceEvents": []})


def test_placement_warning_only_when_the_cpu_keeps_most_nodes():
    assert placement_warning("m.onnx", OV, 2, 4, {"Hardmax": 2}) is None
    w = placement_warning("m.onnx", OV, 1, 4, {"Hardmax": 2, "Relu": 1})
    assert w == ("m.onnx: the model runs mostly on the CPU: OpenVINOExecutionProvider runs 1 of its 4 nodes; "
                 "not placed: Hardmax x2, Relu x1")


def test_cpu_only_session_reports_every_node_on_the_cpu(tmp_path):
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    import edge_runtime

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Neg", ["a"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    p = tmp_path / "m.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(p))
    with edge_runtime.load(p) as m:
        assert m.info["node_placement"] == {CPU: 2} and m.info["cpu_ops"] == {"Relu": 1, "Neg": 1}
        assert np.array_equal(m.run(np.array([[-1, 2, -3, 4]], np.float32))[0], [[0, -2, 0, -4]])
