"""UNIDIRECTIONAL_SEQUENCE_LSTM and SVDF on micro against tflite-micro, state carried across invocations.

Hypothesis draws sizes (batch, time steps, input, state/units, rank, memory), layouts
(time-major or batch-major), quantization parameters (scales, zero points, cell-state
power of two, weight and bias ranges), cell clipping and activations. Each drawn model
runs several consecutive invocations without reset (the variable tensors carry the
state; sometimes with a reset before each call): integer outputs must be
``np.array_equal`` with tflite-micro at every invocation, float32 outputs within 1e-6 of
the largest reference value. Variants tflite-micro refuses (peephole, projection,
layer norm, CIFG) and types it does not run are refused by micro with one clear error.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import flatbuffers
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from edge_runtime.backends.micro import open_model
from edge_runtime.backends.micro.fixedpoint import quantize_multiplier
from edge_runtime.errors import UnsupportedModelError
from tflite_builder import ModelBuilder, T, assert_exact, opts, random_inputs, run_micro, run_tflm, schema


def _settings(n: int) -> Any:
    return settings(max_examples=n, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _assert_refused(path: Path, *words: str) -> None:
    with pytest.raises(UnsupportedModelError) as info:
        open_model(str(path))
    msg = str(info.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg


# ---------------------------------------------------------------------------------------------- LSTM

LSTM_OPTS = "UnidirectionalSequenceLSTMOptions"


@st.composite
def lstm_config(draw: Any) -> dict[str, Any]:
    """An LSTM tflite-micro accepts: sizes, layout, clipping, invocations and a seed for the parameters."""
    wide = draw(st.booleans())
    return dict(b=draw(st.integers(1, 4)), t=draw(st.integers(1, 8)), i=draw(st.integers(1, 40 if wide else 8)),
                s=draw(st.integers(1, 40 if wide else 8)), time_major=draw(st.booleans()),
                cell_clip=draw(st.sampled_from([0.0, 0.0, 0.5, 3.0, 20.0])),
                invocations=draw(st.integers(2, 4)), reset_each=draw(st.sampled_from([False, False, False, True])),
                seed=draw(st.integers(0, 2**31 - 1)))


def _lstm_model(path: Path, kind: str, c: dict[str, Any], variant: Optional[str] = None,
                activation: int = 4, intermediates: Optional[list[int]] = None,
                scales: Optional[dict[str, Any]] = None) -> Path:
    """A one-op LSTM model of ``kind`` (float32, int8 = 8x8->16, int16 = 16x8); ``variant`` adds an
    unsupported feature (peephole, projection, layer_norm, cifg, per_channel); ``intermediates``
    adds the converter's five intermediate tensors, of these lengths (0: no memory); ``scales``
    overrides the drawn ``input``, ``hidden`` and per-matrix ``weights`` scales."""
    rng = np.random.default_rng(c["seed"])
    b, tn, n_in, s = c["b"], c["t"], c["i"], c["s"]
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x_shape = [tn, b, n_in] if c["time_major"] else [b, tn, n_in]
    o_shape = [tn, b, s] if c["time_major"] else [b, tn, s]
    if kind == "float32":
        gain = float(rng.uniform(0.3, 2.0))

        def weights(rows: int, cols: int) -> int:
            w = rng.standard_normal((rows, cols)) * gain / math.sqrt(cols)
            return sg.tensor(T([rows, cols], "float32", data=w.astype(np.float32)))

        def vector(n: int, dtype: str = "float32") -> int:
            return sg.tensor(T([n], dtype, data=(rng.standard_normal(n) * 0.5).astype(np.float32)))

        x = sg.tensor(T(x_shape, "float32"))
        h = sg.tensor(T([b, s], "float32", variable=True))
        cell = sg.tensor(T([b, s], "float32", variable=True))
        out = sg.tensor(T(o_shape, "float32"))
        in_scale = 1.0
    else:
        act, bias_type = ("int8", "int32") if kind == "int8" else ("int16", "int64")
        if kind == "int8":
            in_scale, in_zp = _loguniform(rng, 0.003, 0.1), int(rng.integers(-40, 41))
            h_scale, h_zp = _loguniform(rng, 1 / 256, 1 / 24), int(rng.integers(-30, 31))
        else:  # int16 is meant to be symmetric; tflite-micro applies any zero point, so test a few
            odd = rng.random() < 0.15
            in_scale, in_zp = _loguniform(rng, 2.0 ** -15, 2.0 ** -8), int(rng.integers(-300, 301)) if odd else 0
            h_scale, h_zp = _loguniform(rng, 2.0 ** -15, 2.0 ** -10), int(rng.integers(-300, 301)) if odd else 0
        if scales is not None:
            in_scale, h_scale = scales["input"], scales["hidden"]
            weight_scales = iter(scales["weights"])
        cell_scale = 2.0 ** int(rng.integers(-15, -5))
        if rng.random() < 0.3:  # TFLM rounds a non-power-of-two cell scale to its nearest power for tanh
            cell_scale *= float(rng.uniform(0.75, 1.4))
        w_max = int(rng.choice([8, 40, 127]))
        w_zp = int(rng.integers(-5, 6)) if rng.random() < 0.15 else 0  # asymmetric weights: TFLM applies the offset
        b_max = int(rng.choice([0, 500, 5000, 60000]))
        if kind == "int16":
            b_max *= 256

        def weights(rows: int, cols: int, act_scale: float = in_scale) -> int:
            scale: Any = _loguniform(rng, 0.001, 0.05)
            if scales is not None:
                scale = next(weight_scales)
            if variant == "per_channel":
                scale = rng.uniform(0.001, 0.05, rows).astype(np.float32)
            data = rng.integers(-w_max, w_max + 1, (rows, cols)).astype(np.int8)
            return sg.tensor(T([rows, cols], "int8", scale=scale, zp=w_zp, data=data))

        def vector(n: int, dtype: str = bias_type) -> int:
            return sg.tensor(T([n], dtype, scale=in_scale * 0.01,
                               data=rng.integers(-b_max, b_max + 1, n).astype(dtype)))

        x = sg.tensor(T(x_shape, act, scale=in_scale, zp=in_zp))
        h = sg.tensor(T([b, s], act, scale=h_scale, zp=h_zp, variable=True))
        cell = sg.tensor(T([b, s], "int16", scale=cell_scale, variable=True))
        out = sg.tensor(T(o_shape, act, scale=h_scale, zp=h_zp))
    ins = [x] + [weights(s, n_in) for _ in range(4)] + [weights(s, s) for _ in range(4)] + [-1, -1, -1]
    ins += [vector(s) for _ in range(4)] + [-1, -1, h, cell, -1, -1, -1, -1]
    if variant == "peephole":
        ins[9:12] = [vector(s, "float32" if kind == "float32" else "int16") for _ in range(3)]
    elif variant == "projection":
        ins[16] = weights(s, s)
    elif variant == "layer_norm":
        ins[20:24] = [vector(s, "float32" if kind == "float32" else "int16") for _ in range(4)]
    elif variant == "cifg":
        ins[1] = ins[5] = ins[12] = -1
    sg.op("UNIDIRECTIONAL_SEQUENCE_LSTM", ins, [out],
          opts(LSTM_OPTS, fusedActivationFunction=activation, cellClip=c["cell_clip"], projClip=0.0,
               timeMajor=c["time_major"]), version=5 if kind == "int16" else 1)
    if intermediates is not None:
        ids = [sg.tensor(T([n], "int16" if k < 4 else "int8", scale=2.0 ** -12, name=f"intermediate{k}"))
               for k, n in enumerate(intermediates)]
        sg.sg.operators[-1].intermediates = np.array(ids, np.int32)
    sg.io([x], [out])
    return mb.write(path)


def _run_lstm(tmp_path: Path, kind: str, c: dict[str, Any]) -> None:
    p = _lstm_model(tmp_path / f"lstm_{kind}.tflite", kind, c)
    sets = random_inputs(p, np.random.default_rng(c["seed"] + 1), c["invocations"])
    assert_exact(p, sets, reset_each=c["reset_each"])


@pytest.mark.parity("UNIDIRECTIONAL_SEQUENCE_LSTM", "int8")
@_settings(300)
@given(c=lstm_config())
def test_lstm_int8(tmp_path: Path, c: dict[str, Any]) -> None:
    """8x8->16 LSTM: int8 input/hidden state, int8 weights, int32 bias, int16 cell state."""
    _run_lstm(tmp_path, "int8", c)


@pytest.mark.parity("UNIDIRECTIONAL_SEQUENCE_LSTM", "int16")
@_settings(300)
@given(c=lstm_config())
def test_lstm_int16(tmp_path: Path, c: dict[str, Any]) -> None:
    """16x8 LSTM: int16 input/hidden state, int8 weights, int64 bias, int16 cell state."""
    _run_lstm(tmp_path, "int16", c)


@pytest.mark.parity("UNIDIRECTIONAL_SEQUENCE_LSTM", "float32")
@_settings(200)
@given(c=lstm_config())
def test_lstm_float32(tmp_path: Path, c: dict[str, Any]) -> None:
    """Float LSTM, bit-exact with tflite-micro's float kernel at every invocation."""
    _run_lstm(tmp_path, "float32", c)


@pytest.mark.parity("UNIDIRECTIONAL_SEQUENCE_LSTM", "int8")
def test_lstm_int8_long_sequence(tmp_path: Path) -> None:
    """A longer sequence and wider state, batch-major and time-major, ten invocations carried."""
    for time_major in (False, True):
        c = dict(b=3, t=25, i=20, s=32, time_major=time_major, cell_clip=0.0, invocations=10, reset_each=False,
                 seed=7 + time_major)
        _run_lstm(tmp_path, "int8", c)


def _tie_weight_scale(act_scale: float, rng: np.random.Generator) -> float:
    """A weight scale whose gate multiplier separates tflite-micro's rule (scales multiplied in double)
    from the older one (float32 product): the float32 product lands exactly on a rounding tie of the
    16-bit multiplier that the 16x8 fully connected layers use, and the double product just below it."""
    while True:
        w = float(np.float32(rng.uniform(0.001, 0.05)))
        m_float, _ = quantize_multiplier(float(np.float32(act_scale) * np.float32(w)) * 4096.0)
        m_double, _ = quantize_multiplier(act_scale * w * 4096.0)
        if m_float % 65536 == 32768 and m_double < m_float:
            return w


@pytest.mark.parity("UNIDIRECTIONAL_SEQUENCE_LSTM", "int16")
def test_lstm_int16_gate_multiplier_rounding(tmp_path: Path) -> None:
    """Gate multipliers derived as tflite-micro derives them: every gate sits on a 16-bit rounding tie where
    the float32-product rule gives outputs one step off."""
    rng = np.random.default_rng(11)
    in_scale, h_scale = float(np.float32(2.0 ** -11 * 1.37)), float(np.float32(2.0 ** -12 * 1.11))
    weights = [_tie_weight_scale(in_scale, rng) for _ in range(4)] + [_tie_weight_scale(h_scale, rng) for _ in range(4)]
    c = dict(b=4, t=8, i=16, s=16, time_major=True, cell_clip=0.0, invocations=6, reset_each=False, seed=21)
    p = _lstm_model(tmp_path / "ties.tflite", "int16", c, scales={"input": in_scale, "hidden": h_scale,
                                                                   "weights": weights})
    assert_exact(p, random_inputs(p, np.random.default_rng(5), 6), reset_each=False)


@pytest.mark.parity("UNIDIRECTIONAL_SEQUENCE_LSTM", "int8")
def test_lstm_int8_with_intermediates(tmp_path: Path) -> None:
    """Converted int8 LSTMs list intermediate tensors; tflite-micro ignores them when they hold no memory
    and refuses the model when they do, and so does micro."""
    c = dict(b=2, t=3, i=5, s=6, time_major=False, cell_clip=0.0, invocations=3, reset_each=False, seed=4)
    p = _lstm_model(tmp_path / "inter.tflite", "int8", c, intermediates=[0] * 5)
    assert_exact(p, random_inputs(p, np.random.default_rng(1), 3), reset_each=False)
    p = _lstm_model(tmp_path / "inter_sized.tflite", "int8", c, intermediates=[1] * 5)
    with pytest.raises(RuntimeError):
        run_tflm(p, random_inputs(p, np.random.default_rng(0), 1))
    _assert_refused(p, "UNIDIRECTIONAL_SEQUENCE_LSTM", "intermediate")


@pytest.mark.parity("UNIDIRECTIONAL_SEQUENCE_LSTM", "int8")
@pytest.mark.parity("SVDF", "int8")
def test_stacked_recurrent_int8(tmp_path: Path) -> None:
    """SVDF -> LSTM -> LSTM in one model: several variable states and scratch buffers in one arena plan,
    states carried over invocations (and a reset in between)."""
    rng = np.random.default_rng(17)
    b, tn, n_in, s1, s2, units, rank, mem = 2, 5, 6, 8, 5, 6, 2, 4
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T([b * tn, n_in], "int8", scale=0.05, zp=3))
    st_s, wt_s = 0.02, 0.002
    svdf_out = sg.tensor(T([b * tn, units], "int8", scale=0.04, zp=-2))
    sg.op("SVDF", [x, sg.tensor(T([units * rank, n_in], "int8", scale=0.01,
                                  data=rng.integers(-127, 128, (units * rank, n_in)).astype(np.int8))),
                   sg.tensor(T([units * rank, mem], "int16", scale=wt_s,
                               data=rng.integers(-3000, 3000, (units * rank, mem)).astype(np.int16))),
                   sg.tensor(T([units], "int32", scale=float(np.float32(st_s) * np.float32(wt_s)),
                               data=rng.integers(-5000, 5000, units).astype(np.int32))),
                   sg.tensor(T([b * tn, units * rank * mem], "int16", scale=st_s, variable=True))],
          [svdf_out], opts("SVDFOptions", rank=rank))
    seq = sg.tensor(T([b, tn, units], "int8", scale=0.04, zp=-2))
    sg.op("RESHAPE", [svdf_out, sg.tensor(T([3], "int32", data=np.array([b, tn, units], np.int32)))], [seq],
          opts("ReshapeOptions", newShape=[b, tn, units]))

    def lstm(inp: int, n: int, s: int, in_scale: float, h_scale: float, h_zp: int) -> int:
        def w(rows: int, cols: int) -> int:
            return sg.tensor(T([rows, cols], "int8", scale=float(rng.uniform(0.005, 0.03)),
                               data=rng.integers(-127, 128, (rows, cols)).astype(np.int8)))

        def bias() -> int:
            return sg.tensor(T([s], "int32", scale=in_scale * 0.01,
                               data=rng.integers(-3000, 3000, s).astype(np.int32)))

        h = sg.tensor(T([b, s], "int8", scale=h_scale, zp=h_zp, variable=True))
        cell = sg.tensor(T([b, s], "int16", scale=2.0 ** -11, variable=True))
        out = sg.tensor(T([b, tn, s], "int8", scale=h_scale, zp=h_zp))
        sg.op("UNIDIRECTIONAL_SEQUENCE_LSTM",
              [inp] + [w(s, n) for _ in range(4)] + [w(s, s) for _ in range(4)] + [-1] * 3
              + [bias() for _ in range(4)] + [-1, -1, h, cell] + [-1] * 4, [out],
              opts(LSTM_OPTS, fusedActivationFunction=4))
        return out

    out1 = lstm(seq, units, s1, 0.04, 1 / 128, 5)
    out2 = lstm(out1, s1, s2, 1 / 128, 1 / 100, -7)
    sg.io([x], [out2])
    path = mb.write(tmp_path / "stacked.tflite")
    sets = random_inputs(path, np.random.default_rng(2), 4)
    assert_exact(path, sets, reset_each=False)
    assert_exact(path, sets, reset_each=True)


@pytest.mark.parametrize("variant", ["peephole", "projection", "layer_norm", "cifg"])
@pytest.mark.parametrize("kind", ["int8", "float32"])
def test_lstm_variants_refused(tmp_path: Path, variant: str, kind: str) -> None:
    """Variants tflite-micro's Prepare refuses are refused by micro too, with one line naming the op."""
    c = dict(b=1, t=2, i=3, s=4, time_major=False, cell_clip=0.0, seed=3)
    p = _lstm_model(tmp_path / "v.tflite", kind, c, variant)
    with pytest.raises(RuntimeError):
        run_tflm(p, random_inputs(p, np.random.default_rng(0), 1))
    _assert_refused(p, "UNIDIRECTIONAL_SEQUENCE_LSTM")


def test_lstm_unsupported_refused(tmp_path: Path) -> None:
    """Per-channel weights (undefined in tflite-micro's LSTM), non-TANH cell activation, uint8 input."""
    c = dict(b=1, t=2, i=3, s=4, time_major=False, cell_clip=0.0, seed=3)
    _assert_refused(_lstm_model(tmp_path / "pc.tflite", "int8", c, "per_channel"), "UNIDIRECTIONAL_SEQUENCE_LSTM",
                    "per-channel")
    _assert_refused(_lstm_model(tmp_path / "act.tflite", "float32", c, activation=1),
                    "UNIDIRECTIONAL_SEQUENCE_LSTM", "activation")
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T([1, 2, 3], "uint8", scale=0.1, zp=128))
    w = [sg.tensor(T([4, 3 if k < 4 else 4], "int8", scale=0.01, data=np.ones((4, 3 if k < 4 else 4), np.int8)))
         for k in range(8)]
    bias = [sg.tensor(T([4], "int32", scale=0.001, data=np.zeros(4, np.int32))) for _ in range(4)]
    h = sg.tensor(T([1, 4], "uint8", scale=0.01, zp=128, variable=True))
    cell = sg.tensor(T([1, 4], "int16", scale=2.0 ** -11, variable=True))
    out = sg.tensor(T([1, 2, 4], "uint8", scale=0.01, zp=128))
    sg.op("UNIDIRECTIONAL_SEQUENCE_LSTM", [x] + w + [-1] * 3 + bias + [-1, -1, h, cell] + [-1] * 4, [out],
          opts(LSTM_OPTS, fusedActivationFunction=4))
    sg.io([x], [out])
    _assert_refused(mb.write(tmp_path / "u8.tflite"), "UNIDIRECTIONAL_SEQUENCE_LSTM", "UINT8")


# ---------------------------------------------------------------------------------------------- SVDF

@st.composite
def svdf_config(draw: Any) -> dict[str, Any]:
    """An SVDF tflite-micro accepts: sizes, rank, memory, activation, invocations and a parameter seed."""
    return dict(b=draw(st.integers(1, 4)), i=draw(st.integers(1, 40)), u=draw(st.integers(1, 12)),
                rank=draw(st.integers(1, 4)), m=draw(st.integers(1, 12)),
                act=draw(st.sampled_from([0, 1, 2, 3, 4, 5])), bias=draw(st.booleans()),
                per_channel=draw(st.sampled_from([False, False, False, True])),
                invocations=draw(st.integers(2, 5)), reset_each=draw(st.sampled_from([False, False, False, True])),
                seed=draw(st.integers(0, 2**31 - 1)))


def _svdf_model(path: Path, kind: str, c: dict[str, Any], state_type: str = "int16") -> Path:
    """A one-op SVDF model: float32, or int8 with an int16 or int8 state (and time weights)."""
    rng = np.random.default_rng(c["seed"])
    b, n_in, units, rank, mem = c["b"], c["i"], c["u"], c["rank"], c["m"]
    filters = units * rank
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    if kind == "float32":
        x = sg.tensor(T([b, n_in], "float32"))
        wf = sg.tensor(T([filters, n_in], "float32",
                         data=(rng.standard_normal((filters, n_in)) / math.sqrt(n_in)).astype(np.float32)))
        wt = sg.tensor(T([filters, mem], "float32",
                         data=(rng.standard_normal((filters, mem)) / math.sqrt(mem)).astype(np.float32)))
        bias = sg.tensor(T([units], "float32", data=rng.standard_normal(units).astype(np.float32))) \
            if c["bias"] else -1
        state = sg.tensor(T([b, filters * mem], "float32", variable=True))
        out = sg.tensor(T([b, units], "float32"))
    else:
        in_scale, in_zp = _loguniform(rng, 0.005, 0.1), int(rng.integers(-30, 31))
        wf_scale: Any = _loguniform(rng, 0.002, 0.03)
        if c["per_channel"]:  # tflite-micro's SVDF uses the first scale of per-channel feature weights
            wf_scale = rng.uniform(0.002, 0.03, filters).astype(np.float32)
        st_scale = _loguniform(rng, 0.005, 0.2) if state_type == "int16" else _loguniform(rng, 0.05, 2.0)
        st_zp = int(rng.integers(-20, 21)) if state_type == "int8" or rng.random() < 0.15 else 0
        wt_scale = _loguniform(rng, 1e-4, 1e-2)
        w_max = 32767 if state_type == "int16" else 127
        wt_max = int(rng.choice([w_max // 64, w_max // 4, w_max]))
        b_scale = float(np.float32(st_scale) * np.float32(wt_scale))
        x = sg.tensor(T([b, n_in], "int8", scale=in_scale, zp=in_zp))
        wf = sg.tensor(T([filters, n_in], "int8", scale=wf_scale,
                         data=rng.integers(-127, 128, (filters, n_in)).astype(np.int8)))
        wt = sg.tensor(T([filters, mem], state_type, scale=wt_scale,
                         data=rng.integers(-wt_max, wt_max + 1, (filters, mem)).astype(state_type)))
        bias = sg.tensor(T([units], "int32", scale=b_scale,
                           data=rng.integers(-20000, 20001, units).astype(np.int32)))
        state = sg.tensor(T([b, filters * mem], state_type, scale=st_scale, zp=st_zp, variable=True))
        typical = st_scale * wt_scale * wt_max * 200 * math.sqrt(mem * rank)
        out = sg.tensor(T([b, units], "int8", scale=typical / 60 * float(rng.uniform(0.3, 3.0)),
                          zp=int(rng.integers(-30, 31))))
    sg.op("SVDF", [x, wf, wt, bias, state], [out], opts("SVDFOptions", rank=rank, fusedActivationFunction=c["act"]))
    sg.io([x], [out])
    return mb.write(path)


def _run_svdf(tmp_path: Path, kind: str, c: dict[str, Any], state_type: str = "int16") -> None:
    p = _svdf_model(tmp_path / f"svdf_{kind}_{state_type}.tflite", kind, c, state_type)
    sets = random_inputs(p, np.random.default_rng(c["seed"] + 1), c["invocations"])
    assert_exact(p, sets, reset_each=c["reset_each"])


@pytest.mark.parity("SVDF", "int8")
@_settings(300)
@given(c=svdf_config())
def test_svdf_int8_int16_state(tmp_path: Path, c: dict[str, Any]) -> None:
    """int8 SVDF with int16 time weights and state (TFLM's usual quantized form)."""
    _run_svdf(tmp_path, "int8", c, "int16")


@pytest.mark.parity("SVDF", "int8")
@_settings(200)
@given(c=svdf_config())
def test_svdf_int8_int8_state(tmp_path: Path, c: dict[str, Any]) -> None:
    """int8 SVDF with int8 time weights and an int8 state with a zero point (its stored value wraps)."""
    _run_svdf(tmp_path, "int8", c, "int8")


@pytest.mark.parity("SVDF", "float32")
@_settings(250)
@given(c=svdf_config())
def test_svdf_float32(tmp_path: Path, c: dict[str, Any]) -> None:
    """Float SVDF, every fused activation tflite-micro applies."""
    _run_svdf(tmp_path, "float32", dict(c, bias=True))


@_settings(40)
@given(c=svdf_config())
def test_svdf_float32_without_bias_litert(tmp_path: Path, c: dict[str, Any]) -> None:
    """Float SVDF without bias against LiteRT (tflite-micro's float kernel dereferences the absent bias
    and crashes), state carried over several invocations."""
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    p = _svdf_model(tmp_path / "svdf_nobias.tflite", "float32", dict(c, bias=False))
    sets = random_inputs(p, np.random.default_rng(c["seed"] + 1), c["invocations"])
    it = litert.Interpreter(model_path=str(p), num_threads=1)
    it.allocate_tensors()
    got = run_micro(p, sets, reset_each=False)
    for (x,), (g,) in zip(sets, got):
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        e = it.get_tensor(it.get_output_details()[0]["index"])
        scale = max(1.0, float(np.max(np.abs(e))))
        assert float(np.max(np.abs(g.astype(np.float64) - e))) <= 1e-6 * scale


def _mbqm(x: np.ndarray, scale: float) -> np.ndarray:
    """MultiplyByQuantizedMultiplier (double rounding) of int32 values by a real multiplier."""
    m, shift = quantize_multiplier(scale)
    prod = (x.astype(np.int64) << max(shift, 0)) * m
    high = (prod + (1 << 30)) >> 31
    right = max(-shift, 0)
    if right == 0:
        return high
    return (high + (1 << (right - 1)) - (high < 0)) >> right


@pytest.mark.parity("SVDF", "int8")
def test_svdf_int8_feature_multiplier_rounding(tmp_path: Path) -> None:
    """The feature multiplier derived as tflite-micro derives it (scales multiplied and divided in double):
    each filter's feature sum is one where the float32 rule stores a state one step off, and each unit's
    bias and time weight make that step visible in the output."""
    rng = np.random.default_rng(3)
    in_s, wf_s, st_s = 0.0, 0.0, 0.0
    targets = np.zeros(0, np.int64)
    while targets.size < 4:
        in_s, wf_s, st_s = (float(np.float32(rng.uniform(lo, hi))) for lo, hi in ((0.01, 0.1), (0.002, 0.03),
                                                                                   (0.005, 0.05)))
        f32 = np.float32
        old = float(f32(f32(in_s) * f32(wf_s)) / f32(st_s))
        xs = np.arange(-12000, 12001, dtype=np.int64)
        targets = xs[_mbqm(xs, old) != _mbqm(xs, in_s * wf_s / st_s)][:8]
    filters = targets.size
    a, c_in = 100, 1  # the input; filter f's weights (p, q) give the feature sum p * 100 + q
    p_w = np.round(targets / a).astype(np.int64)
    q_w = targets - p_w * a
    states = np.clip(_mbqm(targets, in_s * wf_s / st_s), -32768, 32767)
    wt_val, wt_s = 1000, 1e-3
    b_s = float(np.float32(st_s) * np.float32(wt_s))
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T([1, 2], "int8", scale=in_s))
    wf = sg.tensor(T([filters, 2], "int8", scale=wf_s, data=np.stack([p_w, q_w], 1).astype(np.int8)))
    wt = sg.tensor(T([filters, 1], "int16", scale=wt_s, data=np.full((filters, 1), wt_val, np.int16)))
    bias = sg.tensor(T([filters], "int32", scale=b_s, data=(-wt_val * states).astype(np.int32)))
    state = sg.tensor(T([1, filters], "int16", scale=st_s, variable=True))
    out = sg.tensor(T([1, filters], "int8", scale=float(np.float32(st_s) * np.float32(wt_s)) * wt_val / 1.5))
    sg.op("SVDF", [x, wf, wt, bias, state], [out], opts("SVDFOptions", rank=1))
    sg.io([x], [out])
    path = mb.write(tmp_path / "svdf_rounding.tflite")
    sets = [[np.array([[a, c_in]], np.int8)]] * 2
    assert_exact(path, sets, reset_each=False)


@pytest.mark.parity("SVDF", "int8")
def test_svdf_int8_output_multiplier_rounding(tmp_path: Path) -> None:
    """The output multiplier derived as tflite-micro derives it: with zero feature weights the state stays
    zero and each output is the requantized bias, chosen where the float32 rule gives one step off."""
    rng = np.random.default_rng(4)
    targets = np.zeros(0, np.int64)
    st_s = wt_s = out_s = 0.0
    while targets.size < 4:
        st_s, wt_s = float(np.float32(rng.uniform(0.005, 0.05))), float(np.float32(rng.uniform(1e-4, 1e-2)))
        out_s = float(np.float32(st_s * wt_s * rng.uniform(50.0, 5000.0)))
        f32 = np.float32
        old = float(f32(f32(st_s) * f32(wt_s)) / f32(out_s))
        new = st_s * wt_s / out_s
        xs = np.arange(-int(120 / new), int(120 / new) + 1, dtype=np.int64)
        targets = xs[_mbqm(xs, old) != _mbqm(xs, new)][:8]
    units = targets.size
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T([1, 3], "int8", scale=0.05))
    wf = sg.tensor(T([units, 3], "int8", scale=0.01, data=np.zeros((units, 3), np.int8)))
    wt = sg.tensor(T([units, 2], "int16", scale=wt_s, data=rng.integers(-100, 100, (units, 2)).astype(np.int16)))
    bias = sg.tensor(T([units], "int32", scale=float(np.float32(st_s) * np.float32(wt_s)),
                       data=targets.astype(np.int32)))
    state = sg.tensor(T([1, 2 * units], "int16", scale=st_s, variable=True))
    out = sg.tensor(T([1, units], "int8", scale=out_s))
    sg.op("SVDF", [x, wf, wt, bias, state], [out], opts("SVDFOptions", rank=1))
    sg.io([x], [out])
    path = mb.write(tmp_path / "svdf_out_rounding.tflite")
    assert_exact(path, random_inputs(path, np.random.default_rng(0), 2), reset_each=False)


def test_svdf_unsupported_refused(tmp_path: Path) -> None:
    """int8 SVDF without bias (tflite-micro cannot prepare it), int16 input, mismatched state type."""
    c = dict(b=1, i=3, u=2, rank=2, m=3, act=0, bias=True, per_channel=False, seed=5)
    p = _svdf_model(tmp_path / "s.tflite", "int8", c)
    def edit(name: str, fn: Any) -> Path:
        m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(p.read_bytes(), 0))
        fn(m.subgraphs[0])
        bld = flatbuffers.Builder(1024)
        bld.Finish(m.Pack(bld), file_identifier=b"TFL3")
        out = tmp_path / name
        out.write_bytes(bytes(bld.Output()))
        return out

    def no_bias(sg: Any) -> None:
        inputs = np.array(sg.operators[0].inputs, np.int32)
        inputs[3] = -1
        sg.operators[0].inputs = inputs

    def int16_input(sg: Any) -> None:
        sg.tensors[sg.operators[0].inputs[0]].type = 7

    def int8_state(sg: Any) -> None:
        t = sg.tensors[sg.operators[0].inputs[4]]
        t.type = 9

    _assert_refused(edit("nobias.tflite", no_bias), "SVDF", "bias")
    _assert_refused(edit("i16.tflite", int16_input), "SVDF", "INT16")
    _assert_refused(edit("st8.tflite", int8_state), "SVDF", "INT8")
