"""The micro backend on the MLPerf Tiny models (issue 3, "Bit-exact" acceptance).

References:
- int8 models: tflite-micro (the ``tflite_micro`` Python package, reference
  kernels), compared element for element with ``np.array_equal``, with the arena
  planned both with and without in-place execution;
- KWS top-1 on kws01: 90.1%, tflite-micro's figure (../shared/models/README.md);
- float models: LiteRT (ai-edge-litert, 1 thread): norm-wise relative error
  ||micro - LiteRT|| / ||LiteRT|| <= 1e-5 over all outputs of the batch. (Both
  compute in float32 with different summation orders; on ad01_fp32 the largest
  single-element difference is 1.5e-5 of the largest output, LiteRT's own
  rounding level, so an element-wise max criterion at 1e-5 is not used.)

tflite-micro's outputs are computed once per module (KWS: 1000 inputs, ~7 s).
"""
from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.backends.micro import open_model
from edge_runtime.reference_data import KWS_INPUT_SCALE, KWS_INPUT_ZERO_POINT, load_ad01_windows, mlperf_data



def _tflm():
    """tflite-micro's runtime (x86_64-only package: tests needing it skip elsewhere)."""
    return pytest.importorskip("tflite_micro.python.tflite_micro.runtime")

INT8_MODELS = ["vww_96_int8", "pretrainedResnet_quant", "ad01_int8", "str_ww_ref_model", "kws_ref_model"]
N_RANDOM = 100


def tflm_run(path, inputs: np.ndarray) -> np.ndarray:
    """tflite-micro's output for each input (batch along axis 0)."""
    it = _tflm().Interpreter.from_file(str(path))
    out = []
    for x in inputs:
        it.set_input(x, 0)
        it.invoke()
        out.append(np.array(it.get_output(0), copy=True))
    return np.stack(out)


def micro_run(model, inputs: np.ndarray) -> np.ndarray:
    """The micro backend's output for each input."""
    return np.stack([model.run(x)[0] for x in inputs])


def sample_inputs(name: str, spec) -> np.ndarray:
    """Each model's real sample inputs from ../shared (none exist for VWW and IC)."""
    if name == "kws_ref_model":
        return np.load(mlperf_data("kws01", "kws_g_kws_inputs_int8_1x49x10x1.npy")).reshape(1, *spec.shape)
    if name == "ad01_int8":
        return np.stack([spec.quantize(w) for w in load_ad01_windows()])
    if name == "str_ww_ref_model":
        tests = [np.load(mlperf_data("sww", f"sww_test_input_class{c}_int8_1x30x1x40.npy")).reshape(spec.shape)
                 for c in range(3)]
        cal = np.load(mlperf_data("sww", "sww_calibration_samples.npz"))
        feats = cal[cal.files[0]] if "x" not in cal.files else cal["x"]
        feats = np.asarray(feats, dtype=np.float32).reshape(-1, *spec.shape[1:])
        return np.concatenate([np.stack(tests), np.stack([spec.quantize(f[None]) for f in feats])])
    return np.zeros((0, *spec.shape), np.int8)


@pytest.fixture(scope="module")
def kws_reference(mlperf_models, kws01):
    """tflite-micro's outputs on all 1000 kws01 inputs."""
    x, y, _ = kws01
    return tflm_run(mlperf_models / "kws_ref_model.tflite", x)


@pytest.mark.parametrize("in_place", [False, True], ids=["no-in-place", "in-place"])
def test_kws01_all_1000_bit_exact_with_tflite_micro(mlperf_models, kws01, kws_reference, in_place):
    x, y, _ = kws01
    m = open_model(str(mlperf_models / "kws_ref_model.tflite"), in_place=in_place)
    out = micro_run(m, x)
    assert out.shape == kws_reference.shape == (1000, 1, 12)
    mismatched = int(np.sum(np.any(out != kws_reference, axis=(1, 2))))
    assert mismatched == 0, f"{mismatched} of 1000 outputs differ from tflite-micro"
    assert np.array_equal(out, kws_reference)
    top1 = float(np.mean(np.argmax(out[:, 0], axis=1) == y))
    assert top1 == pytest.approx(0.901, abs=1e-9)  # tflite-micro's top-1 (README)


@pytest.mark.parametrize("name", [n for n in INT8_MODELS if n != "kws_ref_model"] + ["kws_ref_model"])
def test_int8_models_bit_exact_on_samples_and_random_inputs(mlperf_models, name):
    path = mlperf_models / f"{name}.tflite"
    plans = {ip: open_model(str(path), in_place=ip) for ip in (False, True)}
    spec = plans[False].inputs[0]
    rng = np.random.default_rng(sum(map(ord, name)))
    x = np.concatenate([sample_inputs(name, spec),
                        rng.integers(-128, 128, size=(N_RANDOM, *spec.shape)).astype(np.int8)])
    ref = tflm_run(path, x)
    for in_place, m in plans.items():
        out = micro_run(m, x)
        diff = np.any(out != ref, axis=tuple(range(1, out.ndim)))
        assert not diff.any(), (f"{name} (in_place={in_place}): {int(diff.sum())} of {len(x)} outputs differ "
                                f"from tflite-micro, first at input {int(np.argmax(diff))}")
        assert np.array_equal(out, ref)


def test_sww_sample_predictions_match_readme(mlperf_models):
    """The three streaming-wake-word test inputs give argmax 2, 1, 2 (README, reference results)."""
    m = open_model(str(mlperf_models / "str_ww_ref_model.tflite"))
    x = sample_inputs("str_ww_ref_model", m.inputs[0])[:3]
    assert [int(np.argmax(m.run(v)[0])) for v in x] == [2, 1, 2]


# --------------------------------------------------------------------------- float models vs LiteRT

def litert_run(path, inputs: np.ndarray) -> np.ndarray:
    """LiteRT's output for each input (1 thread)."""
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    it = litert.Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    out = []
    for x in inputs:
        it.set_tensor(i, x)
        it.invoke()
        out.append(np.array(it.get_tensor(o), copy=True))
    return np.stack(out)


def test_load_with_backend_micro_gives_the_same_model(mlperf_models):
    """edge_runtime.load(..., backend="micro") reaches this backend (reference: open_model directly)."""
    import edge_runtime

    path = mlperf_models / "str_ww_ref_model.tflite"
    with edge_runtime.load(path, backend="micro") as m:
        assert m.backend == "micro" and m.info["arena_bytes"] > 0
        x = np.random.default_rng(5).integers(-128, 128, size=m.inputs[0].shape).astype(np.int8)
        assert np.array_equal(m.run(x)[0], open_model(str(path)).run(x)[0])


def float_inputs(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if name == "ad01_fp32":
        return load_ad01_windows()[:50]
    if name == "kws_ref_model_float32":
        q = rng.integers(-128, 128, size=(20, *shape))
        return ((q - KWS_INPUT_ZERO_POINT) * KWS_INPUT_SCALE).astype(np.float32)
    if name == "vww_96_float":
        return rng.uniform(0, 1, size=(10, *shape)).astype(np.float32)
    return rng.uniform(0, 255, size=(10, *shape)).astype(np.float32)  # IC takes raw pixel values


@pytest.mark.parametrize("name", ["vww_96_float", "pretrainedResnet", "ad01_fp32"])
def test_float_models_match_litert(mlperf_models, name):
    path = mlperf_models / f"{name}.tflite"
    m = open_model(str(path))
    x = float_inputs(name, m.inputs[0].shape, np.random.default_rng(7))
    ref = litert_run(path, x)
    out = micro_run(m, x)
    rel = float(np.linalg.norm((out - ref).ravel()) / np.linalg.norm(ref.ravel()))
    assert rel <= 1e-5, f"{name}: relative difference to LiteRT {rel:.3g}"
    assert float(np.max(np.abs(out - ref)) / np.max(np.abs(ref))) <= 5e-5


def dequantized_copy(src, dst) -> None:
    """Rewrite a hybrid model with its int8 weights dequantized to float32 (host side, object API)."""
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
    import flatbuffers

    m = schema.ModelT.InitFromPackedBuf(bytearray(open(src, "rb").read()), 0)
    sg = m.subgraphs[0]
    for t in sg.tensors:
        if t.type == 9 and t.buffer and m.buffers[t.buffer].data is not None and t.quantization is not None:
            q = np.asarray(m.buffers[t.buffer].data, dtype=np.uint8).view(np.int8).astype(np.float32)
            scale = np.asarray(t.quantization.scale, dtype=np.float32)
            shape = tuple(int(s) for s in t.shape)
            q = q.reshape(shape)
            if scale.size > 1:
                bshape = [1] * len(shape)
                bshape[t.quantization.quantizedDimension] = scale.size
                scale = scale.reshape(bshape)
            m.buffers[t.buffer].data = (q * scale).astype(np.float32).reshape(-1).view(np.uint8)
            t.type = 0
            t.quantization = None
    b = flatbuffers.Builder(1 << 20)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    dst.write_bytes(bytes(b.Output()))


def test_hybrid_kws_float32_dequantizes_weights(mlperf_models, kws01, tmp_path):
    """kws_ref_model_float32 (int8 conv weights, float activations): the micro backend dequantizes the
    weights. Reference: LiteRT on the same network with the weights dequantized offline."""
    path = mlperf_models / "kws_ref_model_float32.tflite"
    ref_path = tmp_path / "kws_dequantized.tflite"
    dequantized_copy(path, ref_path)
    x, y, _ = kws01
    xf = ((x[:100].astype(np.float32) - KWS_INPUT_ZERO_POINT) * np.float32(KWS_INPUT_SCALE)).astype(np.float32)
    out = micro_run(open_model(str(path)), xf)
    ref = litert_run(ref_path, xf)
    rel = float(np.linalg.norm((out - ref).ravel()) / np.linalg.norm(ref.ravel()))
    assert rel <= 1e-5, f"relative difference to LiteRT (dequantized weights) {rel:.3g}"
