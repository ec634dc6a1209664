"""Every micro kernel on small single-op models built here (host side, LiteRT's schema object API).

References: int8 models run on tflite-micro (bit-exact, ``np.array_equal``); float32
models on LiteRT (1 thread, relative difference <= 1e-5 of the largest output).
Random inputs and weights; quantization parameters chosen like a converter would.
"""
from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.backends.micro import open_model

schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
import flatbuffers  # noqa: E402


class _Lazy:
    """Import a reference runtime on first use, skipping the test when it is not installed
    (tflite-micro's package exists for x86_64 only)."""

    def __init__(self, module: str) -> None:
        self.module = module

    def __getattr__(self, name: str):
        return getattr(pytest.importorskip(self.module), name)


tflm = _Lazy("tflite_micro.python.tflite_micro.runtime")
litert = _Lazy("ai_edge_litert.interpreter")

TYPES = {"float32": 0, "int32": 2, "int8": 9}


class T:
    """A tensor of the model being built: shape, type, quantization, optional constant data."""

    def __init__(self, shape, dtype="int8", scale=None, zp=0, data=None, axis=0):
        self.shape, self.dtype, self.scale, self.zp, self.data, self.axis = shape, dtype, scale, zp, data, axis


def build(path, op_name: str, inputs: list[T], outputs: list[T], options=None, version: int = 1) -> None:
    """Write a one-op .tflite model; non-constant inputs become graph inputs."""
    m = schema.ModelT()
    m.version = 3
    m.buffers = [schema.BufferT()]
    sg = schema.SubGraphT()
    sg.tensors = []
    for i, t in enumerate(inputs + outputs):
        tt = schema.TensorT()
        tt.shape = np.array(t.shape, np.int32)
        tt.type = TYPES[t.dtype]
        tt.name = f"t{i}"
        tt.buffer = 0
        if t.scale is not None:
            q = schema.QuantizationParametersT()
            q.scale = np.atleast_1d(np.asarray(t.scale, np.float32))
            q.zeroPoint = np.atleast_1d(np.asarray(t.zp, np.int64)) * np.ones(q.scale.size, np.int64)
            q.quantizedDimension = t.axis
            tt.quantization = q
        if t.data is not None:
            b = schema.BufferT()
            b.data = np.ascontiguousarray(t.data).reshape(-1).view(np.uint8)
            m.buffers.append(b)
            tt.buffer = len(m.buffers) - 1
        tt.buffer = tt.buffer
        sg.tensors.append(tt)
    code = getattr(schema.BuiltinOperator, op_name)
    oc = schema.OperatorCodeT()
    oc.builtinCode = code
    oc.deprecatedBuiltinCode = min(code, 127)
    oc.version = version
    m.operatorCodes = [oc]
    op = schema.OperatorT()
    op.opcodeIndex = 0
    op.inputs = np.arange(len(inputs), dtype=np.int32)
    op.outputs = np.arange(len(inputs), len(inputs) + len(outputs), dtype=np.int32)
    if options is not None:
        kind, obj = options
        op.builtinOptionsType = getattr(schema.BuiltinOptions, kind)
        op.builtinOptions = obj
    sg.operators = [op]
    sg.inputs = np.array([i for i, t in enumerate(inputs) if t.data is None], np.int32)
    sg.outputs = op.outputs
    m.subgraphs = [sg]
    b = flatbuffers.Builder(4096)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    path.write_bytes(bytes(b.Output()))


def opts(kind: str, **fields):
    obj = getattr(schema, kind + "T")()
    for k, v in fields.items():
        setattr(obj, k, v)
    return kind, obj


def rand_inputs(model, rng, n):
    out = []
    for _ in range(n):
        xs = []
        for s in model.inputs:
            if s.dtype == np.int8:
                xs.append(rng.integers(-128, 128, size=s.shape).astype(np.int8))
            else:
                xs.append(rng.standard_normal(s.shape).astype(np.float32) * 3)
        out.append(xs)
    return out


def check_int8(path, n: int = 20, seed: int = 0) -> None:
    """Bit-exact against tflite-micro on n random inputs, with and without in-place planning."""
    ref = tflm.Interpreter.from_file(str(path))
    rng = np.random.default_rng(seed)
    models = [open_model(str(path), in_place=ip) for ip in (False, True)]
    for xs in rand_inputs(models[0], rng, n):
        for i, x in enumerate(xs):
            ref.set_input(x, i)
        ref.invoke()
        expect = ref.get_output(0)
        for m in models:
            got = m.run(xs)[0]
            assert np.array_equal(got, expect), f"{path.name}: {got.ravel()[:8]} vs tflite-micro {expect.ravel()[:8]}"


def check_float(path, n: int = 5, seed: int = 0) -> None:
    """Within 1e-5 (relative to the largest output) of LiteRT on n random inputs."""
    ref = litert.Interpreter(model_path=str(path), num_threads=1)
    ref.allocate_tensors()
    rng = np.random.default_rng(seed)
    m = open_model(str(path))
    for xs in rand_inputs(m, rng, n):
        for d, x in zip(ref.get_input_details(), xs):
            ref.set_tensor(d["index"], x)
        ref.invoke()
        expect = ref.get_tensor(ref.get_output_details()[0]["index"])
        got = m.run(xs)[0]
        assert got.shape == expect.shape
        assert np.max(np.abs(got - expect)) <= 1e-5 * max(1.0, float(np.max(np.abs(expect)))), path.name


rng0 = np.random.default_rng(42)


def w8(shape):
    return rng0.integers(-127, 128, size=shape).astype(np.int8)


# ---------------------------------------------------------------------------- int8 vs tflite-micro

def test_conv2d_same_padding_stride_dilation_relu6(tmp_path):
    p = tmp_path / "conv.tflite"
    cout = 6
    build(p, "CONV_2D",
          [T((1, 11, 9, 3), scale=0.05, zp=-3), T((cout, 3, 3, 3), scale=rng0.uniform(0.002, 0.01, cout), data=w8((cout, 3, 3, 3))),
           T((cout,), "int32", scale=0.0, data=rng0.integers(-3000, 3000, cout).astype(np.int32))],
          [T((1, 6, 5, cout), scale=0.03, zp=-128)],
          opts("Conv2DOptions", padding=0, strideW=2, strideH=2, fusedActivationFunction=3, dilationWFactor=1,
               dilationHFactor=1), version=3)
    check_int8(p)


def test_conv2d_valid_dilated(tmp_path):
    p = tmp_path / "conv_dil.tflite"
    build(p, "CONV_2D",
          [T((1, 12, 12, 4), scale=0.1, zp=5), T((5, 3, 3, 4), scale=rng0.uniform(0.002, 0.01, 5), data=w8((5, 3, 3, 4))),
           T((5,), "int32", scale=0.0, data=rng0.integers(-3000, 3000, 5).astype(np.int32))],
          [T((1, 8, 8, 5), scale=0.2, zp=1)],
          opts("Conv2DOptions", padding=1, strideW=1, strideH=1, fusedActivationFunction=1, dilationWFactor=2,
               dilationHFactor=2), version=3)
    check_int8(p)


def test_depthwise_multiplier_2_same_padding(tmp_path):
    p = tmp_path / "dw.tflite"
    build(p, "DEPTHWISE_CONV_2D",
          [T((1, 9, 7, 3), scale=0.05, zp=2), T((1, 3, 3, 6), scale=rng0.uniform(0.005, 0.02, 6), data=w8((1, 3, 3, 6)), axis=3),
           T((6,), "int32", scale=0.0, data=rng0.integers(-500, 500, 6).astype(np.int32))],
          [T((1, 5, 4, 6), scale=0.04, zp=-7)],
          opts("DepthwiseConv2DOptions", padding=0, strideW=2, strideH=2, depthMultiplier=2, fusedActivationFunction=0,
               dilationWFactor=1, dilationHFactor=1), version=3)
    check_int8(p)


def test_fully_connected_per_tensor_with_batch(tmp_path):
    p = tmp_path / "fc.tflite"
    build(p, "FULLY_CONNECTED",
          [T((3, 20), scale=0.07, zp=-10), T((7, 20), scale=0.004, data=w8((7, 20))),
           T((7,), "int32", scale=0.0, data=rng0.integers(-2000, 2000, 7).astype(np.int32))],
          [T((3, 7), scale=0.09, zp=3)], opts("FullyConnectedOptions", fusedActivationFunction=1), version=4)
    check_int8(p)


@pytest.mark.parametrize("op", ["ADD", "SUB", "MUL"])
def test_binary_with_broadcast(tmp_path, op):
    p = tmp_path / f"{op}.tflite"
    kind = {"ADD": "AddOptions", "SUB": "SubOptions", "MUL": "MulOptions"}[op]
    build(p, op, [T((1, 4, 5, 6), scale=0.05, zp=-4), T((1, 1, 1, 6), scale=0.11, zp=9)],
          [T((1, 4, 5, 6), scale=0.08 if op != "MUL" else 0.3, zp=2)], opts(kind, fusedActivationFunction=0),
          version=2)
    check_int8(p)


def test_add_same_shape_relu(tmp_path):
    p = tmp_path / "add.tflite"
    build(p, "ADD", [T((2, 3, 50), scale=0.05, zp=-4), T((2, 3, 50), scale=0.02, zp=9)],
          [T((2, 3, 50), scale=0.04, zp=-128)], opts("AddOptions", fusedActivationFunction=1), version=2)
    check_int8(p)


@pytest.mark.parametrize("op", ["LOGISTIC", "TANH"])
def test_logistic_tanh_follow_tflm_integer_algorithm(tmp_path, op):
    """All 256 int8 input values, bit for bit."""
    p = tmp_path / f"{op}.tflite"
    build(p, op, [T((1, 256), scale=0.06, zp=7)], [T((1, 256), scale=1 / 256 if op == "LOGISTIC" else 1 / 128,
                                                   zp=-128 if op == "LOGISTIC" else 0)], version=2)
    ref = tflm.Interpreter.from_file(str(p))
    x = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)
    ref.set_input(x, 0)
    ref.invoke()
    assert np.array_equal(open_model(str(p)).run(x)[0], ref.get_output(0))


@pytest.mark.parametrize("op", ["RELU", "RELU6"])
def test_relu(tmp_path, op):
    p = tmp_path / f"{op}.tflite"
    build(p, op, [T((1, 256), scale=0.06, zp=7)], [T((1, 256), scale=0.06 if op == "RELU6" else 0.03, zp=-128 if op == "RELU" else 7)])
    ref = tflm.Interpreter.from_file(str(p))
    x = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)
    ref.set_input(x, 0)
    ref.invoke()
    assert np.array_equal(open_model(str(p)).run(x)[0], ref.get_output(0))


@pytest.mark.parametrize("beta", [1.0, 0.7])
def test_softmax_int8(tmp_path, beta):
    p = tmp_path / "softmax.tflite"
    build(p, "SOFTMAX", [T((3, 10), scale=0.17, zp=-20)], [T((3, 10), scale=1 / 256, zp=-128)],
          opts("SoftmaxOptions", beta=beta), version=2)
    check_int8(p, n=50)


@pytest.mark.parametrize("op", ["AVERAGE_POOL_2D", "MAX_POOL_2D"])
def test_pooling_same_padding(tmp_path, op):
    p = tmp_path / f"{op}.tflite"
    build(p, op, [T((1, 7, 9, 4), scale=0.1, zp=-3)], [T((1, 4, 5, 4), scale=0.1, zp=-3)],
          opts("Pool2DOptions", padding=0, strideW=2, strideH=2, filterWidth=3, filterHeight=3,
               fusedActivationFunction=0), version=2)
    check_int8(p)


def test_quantize_requantize_and_dequantize(tmp_path):
    p = tmp_path / "requant.tflite"
    build(p, "QUANTIZE", [T((1, 40), scale=0.05, zp=3)], [T((1, 40), scale=0.021, zp=-9)], version=2)
    check_int8(p)
    p2 = tmp_path / "quant.tflite"
    build(p2, "QUANTIZE", [T((1, 40), "float32")], [T((1, 40), scale=0.021, zp=-9)], version=2)
    ref = tflm.Interpreter.from_file(str(p2))
    x = (np.random.default_rng(1).standard_normal((1, 40)) * 2).astype(np.float32)
    x[0, :4] = [0.0105, -0.0105, 0.0315, 100.0]  # ties and saturation
    ref.set_input(x, 0)
    ref.invoke()
    assert np.array_equal(open_model(str(p2)).run(x)[0], ref.get_output(0))
    p3 = tmp_path / "dequant.tflite"
    build(p3, "DEQUANTIZE", [T((1, 256), scale=0.021, zp=-9)], [T((1, 256), "float32")], version=2)
    ref = tflm.Interpreter.from_file(str(p3))
    x = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)
    ref.set_input(x, 0)
    ref.invoke()
    assert np.array_equal(open_model(str(p3)).run(x)[0], ref.get_output(0))


def test_mean_int8(tmp_path):
    p = tmp_path / "mean.tflite"
    build(p, "MEAN", [T((1, 6, 5, 8), scale=0.1, zp=4), T((2,), "int32", data=np.array([1, 2], np.int32))],
          [T((1, 1, 1, 8), scale=0.05, zp=-2)], opts("ReducerOptions", keepDims=True), version=2)
    check_int8(p)


def test_data_movement_ops(tmp_path):
    p = tmp_path / "pad.tflite"
    build(p, "PAD", [T((1, 3, 4, 2), scale=0.1, zp=5), T((4, 2), "int32", data=np.array([[0, 0], [1, 2], [2, 0], [0, 0]], np.int32))],
          [T((1, 6, 6, 2), scale=0.1, zp=5)], opts("PadOptions"), version=2)
    check_int8(p, n=5)
    p = tmp_path / "concat.tflite"
    build(p, "CONCATENATION", [T((1, 3, 2), scale=0.1, zp=1), T((1, 3, 5), scale=0.1, zp=1)],
          [T((1, 3, 7), scale=0.1, zp=1)], opts("ConcatenationOptions", axis=-1, fusedActivationFunction=0), version=2)
    check_int8(p, n=5)
    p = tmp_path / "slice.tflite"
    build(p, "STRIDED_SLICE", [T((1, 8, 6), scale=0.1, zp=1), T((3,), "int32", data=np.array([0, 1, 0], np.int32)),
                               T((3,), "int32", data=np.array([1, 7, 6], np.int32)), T((3,), "int32", data=np.array([1, 2, 2], np.int32))],
          [T((1, 3, 3), scale=0.1, zp=1)], opts("StridedSliceOptions", beginMask=0, endMask=0, shrinkAxisMask=0), version=2)
    check_int8(p, n=5)
    p = tmp_path / "transpose.tflite"
    build(p, "TRANSPOSE", [T((2, 3, 4), scale=0.1, zp=1), T((3,), "int32", data=np.array([2, 0, 1], np.int32))],
          [T((4, 2, 3), scale=0.1, zp=1)], opts("TransposeOptions"), version=2)
    check_int8(p, n=5)


# ---------------------------------------------------------------------------- float32 vs LiteRT

def wf(shape):
    return rng0.standard_normal(shape).astype(np.float32) * 0.3


FLOAT_CASES = {
    "CONV_2D": ([T((1, 9, 9, 3), "float32"), T((4, 3, 3, 3), "float32", data=wf((4, 3, 3, 3))), T((4,), "float32", data=wf(4))],
                [T((1, 5, 5, 4), "float32")], opts("Conv2DOptions", padding=0, strideW=2, strideH=2, fusedActivationFunction=1,
                                                   dilationWFactor=1, dilationHFactor=1)),
    "DEPTHWISE_CONV_2D": ([T((1, 6, 6, 4), "float32"), T((1, 3, 3, 4), "float32", data=wf((1, 3, 3, 4))), T((4,), "float32", data=wf(4))],
                          [T((1, 6, 6, 4), "float32")], opts("DepthwiseConv2DOptions", padding=0, strideW=1, strideH=1,
                                                             depthMultiplier=1, fusedActivationFunction=3,
                                                             dilationWFactor=1, dilationHFactor=1)),
    "FULLY_CONNECTED": ([T((2, 10), "float32"), T((3, 10), "float32", data=wf((3, 10))), T((3,), "float32", data=wf(3))],
                        [T((2, 3), "float32")], opts("FullyConnectedOptions", fusedActivationFunction=0)),
    "MUL": ([T((2, 5), "float32"), T((1, 5), "float32")], [T((2, 5), "float32")], opts("MulOptions", fusedActivationFunction=0)),
    "SUB": ([T((2, 5), "float32"), T((2, 5), "float32")], [T((2, 5), "float32")], opts("SubOptions", fusedActivationFunction=3)),
    "LOGISTIC": ([T((3, 7), "float32")], [T((3, 7), "float32")], None),
    "TANH": ([T((3, 7), "float32")], [T((3, 7), "float32")], None),
    "RELU6": ([T((3, 7), "float32")], [T((3, 7), "float32")], None),
    "SOFTMAX": ([T((3, 7), "float32")], [T((3, 7), "float32")], opts("SoftmaxOptions", beta=1.0)),
    "MEAN": ([T((1, 4, 4, 3), "float32"), T((2,), "int32", data=np.array([1, 2], np.int32))], [T((1, 3), "float32")],
             opts("ReducerOptions", keepDims=False)),
    "AVERAGE_POOL_2D": ([T((1, 5, 5, 2), "float32")], [T((1, 3, 3, 2), "float32")],
                        opts("Pool2DOptions", padding=0, strideW=2, strideH=2, filterWidth=3, filterHeight=3,
                             fusedActivationFunction=0)),
    "MAX_POOL_2D": ([T((1, 5, 5, 2), "float32")], [T((1, 2, 2, 2), "float32")],
                    opts("Pool2DOptions", padding=1, strideW=2, strideH=2, filterWidth=2, filterHeight=2,
                         fusedActivationFunction=0)),
}


@pytest.mark.parametrize("op", sorted(FLOAT_CASES))
def test_float32_ops_match_litert(tmp_path, op):
    ins, outs, o = FLOAT_CASES[op]
    p = tmp_path / f"{op}.tflite"
    build(p, op, ins, outs, o)
    check_float(p)


def test_strided_slice_shrink_and_negative_stride(tmp_path):
    p = tmp_path / "slice2.tflite"
    build(p, "STRIDED_SLICE", [T((2, 8, 6), scale=0.1, zp=1), T((3,), "int32", data=np.array([1, 6, 0], np.int32)),
                               T((3,), "int32", data=np.array([2, 0, 6], np.int32)),
                               T((3,), "int32", data=np.array([1, -2, 3], np.int32))],
          [T((3, 2), scale=0.1, zp=1)], opts("StridedSliceOptions", beginMask=0, endMask=0, shrinkAxisMask=1),
          version=2)
    check_int8(p, n=5)


IN_PLACE_GEOMETRIES = {
    # name: (op, input shape, filter shape, output shape, options)
    "dw3x3_s1_same": ("DEPTHWISE_CONV_2D", (1, 40, 12, 8), (1, 3, 3, 8), (1, 40, 12, 8), dict(padding=0, s=1)),
    "dw5x5_s1_same": ("DEPTHWISE_CONV_2D", (1, 30, 10, 8), (1, 5, 5, 8), (1, 30, 10, 8), dict(padding=0, s=1)),
    "dw3x3_s2_same": ("DEPTHWISE_CONV_2D", (1, 40, 12, 8), (1, 3, 3, 8), (1, 20, 6, 8), dict(padding=0, s=2)),
    "conv3x3_s1_same": ("CONV_2D", (1, 30, 10, 8), (8, 3, 3, 8), (1, 30, 10, 8), dict(padding=0, s=1)),
    "conv3x3_expand": ("CONV_2D", (1, 30, 10, 4), (8, 3, 3, 4), (1, 30, 10, 8), dict(padding=0, s=1)),
    "conv1x1_expand": ("CONV_2D", (1, 40, 10, 4), (12, 1, 1, 4), (1, 40, 10, 12), dict(padding=1, s=1)),
}


@pytest.mark.parametrize("name", sorted(IN_PLACE_GEOMETRIES))
def test_in_place_chunked_convolutions_bit_exact(tmp_path, name):
    """Output written over the input, chunk by chunk, with the line buffer the kernel declared
    (a small workspace forces several chunks). Reference: tflite-micro."""
    op, xs, ws_, ys, o = IN_PLACE_GEOMETRIES[name]
    cout = ys[3]
    kind = "DepthwiseConv2DOptions" if op == "DEPTHWISE_CONV_2D" else "Conv2DOptions"
    extra = {"depthMultiplier": 1} if op == "DEPTHWISE_CONV_2D" else {}
    p = tmp_path / f"{name}.tflite"
    build(p, op, [T(xs, scale=0.05, zp=3), T(ws_, scale=rng0.uniform(0.002, 0.01, cout), data=w8(ws_),
                                             axis=3 if op == "DEPTHWISE_CONV_2D" else 0),
                  T((cout,), "int32", scale=0.0, data=rng0.integers(-900, 900, cout).astype(np.int32))],
          [T(ys, scale=0.04, zp=-5)],
          opts(kind, padding=o["padding"], strideW=o["s"], strideH=o["s"], fusedActivationFunction=0,
               dilationWFactor=1, dilationHFactor=1, **extra), version=3)
    m = open_model(str(p), in_place=True, workspace_limit=4096)
    it = m.interpreter
    assert it.plan.runs_in_place(0), "the planner did not run the op in place"
    assert len(it.kernels[0].chunks) > 2
    # line buffer: rows a chunk overwrites that the next chunk still reads (pad_top rows at stride 1)
    expected_scratch = {"dw3x3_s1_same": 12 * 8, "dw5x5_s1_same": 2 * 10 * 8, "dw3x3_s2_same": None}
    if name in expected_scratch:
        sc = it.plan.scratch(0)
        assert (sc[1] if sc else None) == expected_scratch[name]
    ref = tflm.Interpreter.from_file(str(p))
    rng = np.random.default_rng(9)
    for _ in range(5):
        x = rng.integers(-128, 128, size=xs).astype(np.int8)
        ref.set_input(x, 0)
        ref.invoke()
        assert np.array_equal(m.run(x)[0], ref.get_output(0))
