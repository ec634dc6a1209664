"""TFLM's Signal* custom ops (the audio front-end) on micro against tflite-micro.

Every model is one custom op with FlexBuffers options; integer variants must match
tflite-micro exactly (``np.array_equal``), float variants within 1e-6 of the largest value.
Stateful ops (Framer, Stacker, Delay, OverlapAdd, FilterBankSpectralSubtraction) run a
sequence of invocations without reset on both sides, then are reset and run again. Outputs
that TFLM leaves unwritten (Energy outside its bins, Framer/Stacker frames that are not
ready) hold stale arena bytes and are not compared.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tflite_builder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tflite_builder import ModelBuilder, T, tflm, tflm_arena_size

from edge_runtime.backends.micro import open_model
from edge_runtime.errors import UnsupportedModelError
from alloc_probe import traced_allocations

flexbuffers = pytest.importorskip("flatbuffers.flexbuffers")
# the shared builder has no uint64 entry (TensorType 12): SignalFilterBank's output needs it
tflite_builder.TYPES.setdefault("uint64", 12)
tflite_builder.NP_TYPES.setdefault("uint64", np.uint64)


def _settings(n: int) -> Any:
    return settings(max_examples=n, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


TYPE_CODES = {"int16": 7, "int32": 2, "float32": 0}
#: even FFT lengths whose half factors into 2, 3 and 5 (TFLM's KissFFT build crashes on other radices)
FFT_LENGTHS = [4, 6, 8, 10, 12, 16, 18, 20, 24, 30, 32, 36, 40, 48, 50, 60, 64, 72, 80, 90, 96, 100, 120, 128,
               150, 160, 180, 192, 200, 240, 250, 256, 320, 360, 400, 480, 512]


def fb_options(**kw: Any) -> bytes:
    """A FlexBuffers map of ints and bools."""
    b = flexbuffers.Builder()
    with b.Map():
        for k, v in kw.items():
            if isinstance(v, bool):
                b.Bool(k, v)
            else:
                b.Int(k, int(v))
    return bytes(b.Finish())


def one_op(path: Path, name: str, inputs: Sequence[T], outputs: Sequence[T], **options: Any) -> Path:
    """A one-op model; non-constant inputs are the graph inputs."""
    mb = ModelBuilder()
    sg = mb.subgraph()
    ins = [sg.tensor(t) for t in inputs]
    outs = [sg.tensor(t) for t in outputs]
    sg.op("custom:" + name, ins, outs, custom_options=fb_options(**options))
    sg.io([i for i, t in zip(ins, inputs) if t.data is None], outs)
    return mb.write(path)




def run_sequence(path: Path, steps: list[list[np.ndarray]], reset_after: int | None = None,
                 in_place: bool = True) -> tuple[list[list[np.ndarray]], list[list[np.ndarray]]]:
    """tflite-micro's and micro's outputs for consecutive invocations (both reset after step ``reset_after``)."""
    ref = tflm.Interpreter.from_file(str(path), arena_size=tflm_arena_size(path))
    m = open_model(str(path), in_place=in_place)
    n_out = len(m.interpreter.output_views)
    expect, got = [], []
    for k, xs in enumerate(steps):
        if reset_after is not None and k == reset_after:
            ref.reset()
            m.reset()  # the stateful kernels register their reset with the interpreter
        for i, x in enumerate(xs):
            ref.set_input(np.ascontiguousarray(x), i)
        ref.invoke()
        expect.append([np.array(ref.get_output(i)) for i in range(n_out)])
        got.append([np.array(o) for o in m.run(list(xs))])
    return expect, got


def check_exact(path: Path, steps: list[list[np.ndarray]], reset_after: int | None = None) -> None:
    """Every output of every step equal to tflite-micro's (in-place planning on and off)."""
    for in_place in (True, False):
        expect, got = run_sequence(path, steps, reset_after, in_place)
        for k, (es, gs) in enumerate(zip(expect, got)):
            for j, (e, g) in enumerate(zip(es, gs)):
                assert g.dtype == e.dtype and g.shape == e.shape, f"step {k} output {j}: {g.dtype}{g.shape} vs " \
                                                                  f"{e.dtype}{e.shape}"
                assert np.array_equal(g, e), f"step {k} output {j}: {g.ravel()[:8]} vs tflite-micro {e.ravel()[:8]}"


def check_close(path: Path, steps: list[list[np.ndarray]], reset_after: int | None = None,
                rtol: float = 1e-6) -> None:
    """Float outputs within ``rtol`` of the largest reference value."""
    expect, got = run_sequence(path, steps, reset_after)
    for es, gs in zip(expect, got):
        for e, g in zip(es, gs):
            assert g.dtype == e.dtype and g.shape == e.shape
            scale = max(1.0, float(np.max(np.abs(e)))) if e.size else 1.0
            assert float(np.max(np.abs(g.astype(np.float64) - e))) <= rtol * scale if e.size else True


def refused(path: Path, what: str) -> None:
    """micro refuses the model with one clean line naming the op."""
    with pytest.raises(UnsupportedModelError) as info:
        open_model(str(path))
    msg = str(info.value)
    assert "\n" not in msg and what in msg


def rand_int(rng: np.random.Generator, shape: Any, dtype: str, lo: int | None = None,
             hi: int | None = None) -> np.ndarray:
    """Uniform integers over the dtype's range (or [lo, hi])."""
    info = np.iinfo(dtype)
    lo = int(info.min) if lo is None else lo
    hi = int(info.max) if hi is None else hi
    return rng.integers(lo, hi, size=shape, endpoint=True, dtype=np.dtype(dtype))


def log_uniform_u32(rng: np.random.Generator, shape: Any, max_bits: int = 32) -> np.ndarray:
    """uint32 values spread over magnitudes (bit lengths 0..max_bits)."""
    bits = rng.integers(0, max_bits + 1, size=shape)
    vals = rng.integers(0, 1 << 62, size=shape, dtype=np.int64) >> (62 - bits)
    return vals.astype(np.uint32)


# ---------------------------------------------------------------------------
# SignalWindow

@pytest.mark.parity("SignalWindow", "int16")
@_settings(300)
@given(width=st.integers(1, 64), rows=st.lists(st.integers(1, 3), min_size=0, max_size=2),
       shift=st.integers(0, 31), seed=st.integers(0, 2**31 - 1))
def test_window_matches_tflite_micro(tmp_path, width, rows, shift, seed):
    rng = np.random.default_rng(seed)
    shape = tuple(rows) + (width,)
    w = rand_int(rng, (width,), "int16")
    p = one_op(tmp_path / "w.tflite", "SignalWindow", [T(shape, "int16"), T((width,), "int16", data=w)],
               [T(shape, "int16")], shift=shift)
    check_exact(p, [[rand_int(rng, shape, "int16")] for _ in range(3)])


def test_window_refuses_bad_types(tmp_path):
    p = one_op(tmp_path / "w.tflite", "SignalWindow",
               [T((4,), "int8"), T((4,), "int16", data=np.ones(4, np.int16))], [T((4,), "int16")], shift=1)
    refused(p, "SignalWindow")
    p = one_op(tmp_path / "w2.tflite", "SignalWindow",
               [T((5,), "int16"), T((4,), "int16", data=np.ones(4, np.int16))], [T((5,), "int16")], shift=1)
    refused(p, "multiple of the window length")


# ---------------------------------------------------------------------------
# SignalRfft / SignalIrfft

def _fft_input(rng: np.random.Generator, shape: Any, dtype: str, mag: int) -> np.ndarray:
    if dtype == "float32":
        return (rng.standard_normal(shape) * 10.0 ** rng.integers(-2, 4)).astype(np.float32)
    if dtype == "int16":
        return (rand_int(rng, shape, "int16") >> mag).astype(np.int16)
    return (rand_int(rng, shape, "int32") >> (2 * mag)).astype(np.int32)


@pytest.mark.parametrize("dtype", [
    pytest.param("int16", marks=pytest.mark.parity("SignalRfft", "int16")),
    pytest.param("int32", marks=pytest.mark.parity("SignalRfft", "int32")),
    pytest.param("float32", marks=pytest.mark.parity("SignalRfft", "float32", "close")),
])
@_settings(250)
@given(n=st.sampled_from(FFT_LENGTHS), lead=st.lists(st.integers(1, 3), min_size=0, max_size=2),
       cut=st.integers(0, 100), extra=st.integers(0, 3), mag=st.integers(0, 12), seed=st.integers(0, 2**31 - 1))
def test_rfft_matches_tflite_micro(tmp_path, dtype, n, lead, cut, extra, mag, seed):
    rng = np.random.default_rng(seed)
    in_len = max(1, n - (n * cut) // 100)
    x_shape = tuple(lead) + (in_len,)
    y_shape = tuple(lead) + (2 * (n // 2 + 1 + extra),)
    p = one_op(tmp_path / "rfft.tflite", "SignalRfft", [T(x_shape, dtype)], [T(y_shape, dtype)],
               T=TYPE_CODES[dtype], fft_length=n)
    steps = [[_fft_input(rng, x_shape, dtype, mag)] for _ in range(2)]
    if extra:  # bins past the spectrum are left unwritten: compare the spectrum only
        expect, got = run_sequence(p, steps)
        for e, g in zip(expect, got):
            k = 2 * (n // 2 + 1)
            assert np.allclose(g[0][..., :k], e[0][..., :k], rtol=0, atol=1e-6 * max(1.0, np.abs(e[0]).max())) \
                if dtype == "float32" else np.array_equal(g[0][..., :k], e[0][..., :k])
    elif dtype == "float32":
        check_close(p, steps)
    else:
        check_exact(p, steps)


@pytest.mark.parametrize("dtype", [
    pytest.param("int16", marks=pytest.mark.parity("SignalIrfft", "int16")),
    pytest.param("int32", marks=pytest.mark.parity("SignalIrfft", "int32")),
    pytest.param("float32", marks=pytest.mark.parity("SignalIrfft", "float32", "close")),
])
@_settings(250)
@given(n=st.sampled_from(FFT_LENGTHS), lead=st.lists(st.integers(1, 3), min_size=0, max_size=2),
       extra_in=st.integers(0, 2), mag=st.integers(0, 12), seed=st.integers(0, 2**31 - 1))
def test_irfft_matches_tflite_micro(tmp_path, dtype, n, lead, extra_in, mag, seed):
    rng = np.random.default_rng(seed)
    x_shape = tuple(lead) + (2 * (n // 2 + 1 + extra_in),)
    y_shape = tuple(lead) + (n,)
    p = one_op(tmp_path / "irfft.tflite", "SignalIrfft", [T(x_shape, dtype)], [T(y_shape, dtype)],
               T=TYPE_CODES[dtype], fft_length=n)
    steps = [[_fft_input(rng, x_shape, dtype, mag)] for _ in range(2)]
    if dtype == "float32":
        check_close(p, steps)
    else:
        check_exact(p, steps)


def test_fft_refuses_unsupported_lengths_and_types(tmp_path):
    p = one_op(tmp_path / "a.tflite", "SignalRfft", [T((14,), "int16")], [T((16,), "int16")], T=7, fft_length=14)
    refused(p, "prime factor 7")
    p = one_op(tmp_path / "b.tflite", "SignalRfft", [T((16,), "int8")], [T((18,), "int8")], T=9, fft_length=16)
    refused(p, "SignalRfft")
    p = one_op(tmp_path / "c.tflite", "SignalIrfft", [T((18,), "int16")], [T((16,), "int32")], T=7, fft_length=16)
    refused(p, "SignalIrfft")


# ---------------------------------------------------------------------------
# SignalFftAutoScale

@pytest.mark.parity("SignalFftAutoScale", "int16")
@_settings(300)
@given(n=st.integers(1, 300), mag=st.integers(0, 16), special=st.sampled_from(["none", "min", "zeros"]),
       seed=st.integers(0, 2**31 - 1))
def test_fft_auto_scale_matches_tflite_micro(tmp_path, n, mag, special, seed):
    rng = np.random.default_rng(seed)
    p = one_op(tmp_path / "as.tflite", "SignalFftAutoScale", [T((n,), "int16")], [T((n,), "int16"), T((), "int32")])
    steps = []
    for _ in range(3):
        x = (rand_int(rng, (n,), "int16") >> mag).astype(np.int16)
        if special == "min":
            x[rng.integers(0, n, size=rng.integers(1, 3))] = -32768
        elif special == "zeros":
            x[:] = 0
        steps.append([x])
    check_exact(p, steps)


def test_fft_auto_scale_refuses_bad_types(tmp_path):
    p = one_op(tmp_path / "as.tflite", "SignalFftAutoScale", [T((8,), "int16")], [T((8,), "int16"), T((), "int16")])
    refused(p, "SignalFftAutoScale")


# ---------------------------------------------------------------------------
# SignalEnergy

@pytest.mark.parity("SignalEnergy", "int16")
@_settings(300)
@given(bins=st.integers(1, 300), a=st.integers(0, 300), b=st.integers(0, 300), seed=st.integers(0, 2**31 - 1))
def test_energy_matches_tflite_micro(tmp_path, bins, a, b, seed):
    rng = np.random.default_rng(seed)
    start, end = sorted((a % (bins + 1), b % (bins + 1)))
    p = one_op(tmp_path / "e.tflite", "SignalEnergy", [T((2 * bins,), "int16")], [T((bins,), "uint32")],
               end_index=end, start_index=start)
    steps = [[rand_int(rng, (2 * bins,), "int16")] for _ in range(3)]
    steps[0][0][:4] = -32768  # the int32 sum that wraps
    expect, got = run_sequence(p, steps)
    for e, g in zip(expect, got):
        assert g[0].dtype == e[0].dtype and g[0].shape == e[0].shape
        assert np.array_equal(g[0][start:end], e[0][start:end])


def test_energy_refuses_bad_types(tmp_path):
    p = one_op(tmp_path / "e.tflite", "SignalEnergy", [T((8,), "int16")], [T((4,), "int32")], end_index=4,
               start_index=0)
    refused(p, "SignalEnergy")


# ---------------------------------------------------------------------------
# SignalFilterBank

def _filterbank_config(rng: np.random.Generator, n_in: int, nch: int) -> tuple[np.ndarray, ...]:
    fstart = rng.integers(0, n_in, size=nch + 1)
    width = np.array([rng.integers(0, min(16, n_in - f) + 1) for f in fstart])
    wstart = np.concatenate([[0], np.cumsum(width)[:-1]])
    n_w = int(width.sum()) + int(rng.integers(0, 3))
    return fstart.astype(np.int16), wstart.astype(np.int16), width.astype(np.int16), n_w


@pytest.mark.parity("SignalFilterBank", "uint32")
@_settings(300)
@given(n_in=st.integers(1, 257), nch=st.integers(1, 40), out_cut=st.integers(0, 5), neg=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_filter_bank_matches_tflite_micro(tmp_path, n_in, nch, out_cut, neg, seed):
    rng = np.random.default_rng(seed)
    fstart, wstart, width, n_w = _filterbank_config(rng, n_in, nch)
    lo = -32768 if neg else 0
    w = rand_int(rng, (max(1, n_w),), "int16", lo, 4096)
    u = rand_int(rng, (max(1, n_w),), "int16", lo, 4096)
    n_out = max(1, nch - out_cut)
    p = one_op(tmp_path / "fb.tflite", "SignalFilterBank",
               [T((n_in,), "uint32"), T(w.shape, "int16", data=w), T(u.shape, "int16", data=u),
                T((nch + 1,), "int16", data=fstart), T((nch + 1,), "int16", data=wstart),
                T((nch + 1,), "int16", data=width)],
               [T((n_out,), "uint64")], num_channels=nch)
    check_exact(p, [[log_uniform_u32(rng, (n_in,))] for _ in range(3)])


def test_filter_bank_refuses_bad_config(tmp_path):
    z = np.zeros(3, np.int16)
    p = one_op(tmp_path / "fb.tflite", "SignalFilterBank",
               [T((8,), "uint32"), T((4,), "int16", data=z[:2].repeat(2)), T((4,), "int16", data=z[:2].repeat(2)),
                T((3,), "int16", data=np.array([0, 6, 7], np.int16)), T((3,), "int16", data=z),
                T((3,), "int16", data=np.array([2, 4, 1], np.int16))],
               [T((2,), "uint64")], num_channels=2)
    refused(p, "reads past")
    p = one_op(tmp_path / "fb2.tflite", "SignalFilterBank",
               [T((8,), "int32"), T((4,), "int16", data=z[:2].repeat(2)), T((4,), "int16", data=z[:2].repeat(2)),
                T((3,), "int16", data=z), T((3,), "int16", data=z), T((3,), "int16", data=z)],
               [T((2,), "uint64")], num_channels=2)
    refused(p, "SignalFilterBank")


# ---------------------------------------------------------------------------
# SignalFilterBankSquareRoot

@pytest.mark.parity("SignalFilterBankSquareRoot", "uint64")
@_settings(300)
@given(n=st.integers(1, 64), shift=st.integers(0, 31), seed=st.integers(0, 2**31 - 1))
def test_filter_bank_square_root_matches_tflite_micro(tmp_path, n, shift, seed):
    rng = np.random.default_rng(seed)
    p = one_op(tmp_path / "sq.tflite", "SignalFilterBankSquareRoot",
               [T((n,), "uint64"), T((), "int32", data=np.array(shift, np.int32))], [T((n,), "uint32")])
    steps = []
    for _ in range(3):
        bits = rng.integers(0, 65, size=n)
        hi = rng.integers(0, 1 << 63, size=n, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, size=n,
                                                                                              dtype=np.uint64)
        x = np.where(bits >= 64, hi, hi >> (64 - bits).astype(np.uint64))
        x[:min(n, 4)] = np.array([0, 1, (1 << 32) - 1, (1 << 64) - 1], np.uint64)[:min(n, 4)]
        steps.append([x.astype(np.uint64)])
    check_exact(p, steps)


def test_filter_bank_square_root_refuses_bad_types(tmp_path):
    p = one_op(tmp_path / "sq.tflite", "SignalFilterBankSquareRoot",
               [T((4,), "uint32"), T((), "int32", data=np.array(0, np.int32))], [T((4,), "uint32")])
    refused(p, "SignalFilterBankSquareRoot")


# ---------------------------------------------------------------------------
# SignalFilterBankSpectralSubtraction

@pytest.mark.parity("SignalFilterBankSpectralSubtraction", "uint32")
@_settings(250)
@given(nch=st.integers(1, 40), ssb=st.integers(0, 20), sb=st.integers(0, 12), s=st.integers(0, 100),
       alt=st.integers(0, 100), msr=st.integers(0, 100), clamping=st.booleans(), noise_cut=st.integers(0, 3),
       mag=st.integers(8, 32), seed=st.integers(0, 2**31 - 1))
def test_spectral_subtraction_matches_tflite_micro(tmp_path, nch, ssb, sb, s, alt, msr, clamping, noise_cut, mag,
                                                   seed):
    rng = np.random.default_rng(seed)
    one = 1 << ssb
    sm, am, mr = one * s // 100, one * alt // 100, one * msr // 100
    n_noise = max(1, nch - noise_cut)
    p = one_op(tmp_path / "ss.tflite", "SignalFilterBankSpectralSubtraction", [T((nch,), "uint32")],
               [T((nch,), "uint32"), T((n_noise,), "uint32")],
               alternate_one_minus_smoothing=one - am, alternate_smoothing=am, clamping=clamping,
               min_signal_remaining=mr, num_channels=nch, one_minus_smoothing=one - sm, smoothing=sm,
               smoothing_bits=sb, spectral_subtraction_bits=ssb)
    steps = [[log_uniform_u32(rng, (nch,), mag)] for _ in range(6)]
    check_exact(p, steps, reset_after=4)


def test_spectral_subtraction_refuses_bad_types(tmp_path):
    p = one_op(tmp_path / "ss.tflite", "SignalFilterBankSpectralSubtraction", [T((4,), "int32")],
               [T((4,), "uint32"), T((4,), "uint32")],
               alternate_one_minus_smoothing=1, alternate_smoothing=1, clamping=False, min_signal_remaining=1,
               num_channels=4, one_minus_smoothing=1, smoothing=1, smoothing_bits=1, spectral_subtraction_bits=1)
    refused(p, "SignalFilterBankSpectralSubtraction")


# ---------------------------------------------------------------------------
# SignalFilterBankLog

@pytest.mark.parity("SignalFilterBankLog", "uint32")
@_settings(300)
@given(n=st.integers(1, 64), bits=st.integers(0, 16), scale=st.sampled_from([0, 1, 100, 1600, 65535, 1 << 20]),
       seed=st.integers(0, 2**31 - 1))
def test_filter_bank_log_matches_tflite_micro(tmp_path, n, bits, scale, seed):
    rng = np.random.default_rng(seed)
    p = one_op(tmp_path / "log.tflite", "SignalFilterBankLog", [T((n,), "uint32")], [T((n,), "int16")],
               input_correction_bits=bits, output_scale=scale)
    steps = [[log_uniform_u32(rng, (n,))] for _ in range(3)]
    steps[0][0][:3] = np.array([0, 1, 2], np.uint32)[:min(n, 3)]
    check_exact(p, steps)


def test_filter_bank_log_refuses_bad_types(tmp_path):
    p = one_op(tmp_path / "log.tflite", "SignalFilterBankLog", [T((4,), "uint32")], [T((4,), "int32")],
               input_correction_bits=0, output_scale=1)
    refused(p, "SignalFilterBankLog")


# ---------------------------------------------------------------------------
# SignalPCAN

@pytest.mark.parity("SignalPCAN", "uint32")
@_settings(300)
@given(n=st.integers(1, 64), shift=st.integers(0, 40), lut_len=st.integers(125, 130), seed=st.integers(0, 2**31 - 1))
def test_pcan_matches_tflite_micro(tmp_path, n, shift, lut_len, seed):
    rng = np.random.default_rng(seed)
    lut = rand_int(rng, (lut_len,), "int16")
    p = one_op(tmp_path / "pcan.tflite", "SignalPCAN",
               [T((n,), "uint32"), T((n,), "uint32"), T((lut_len,), "int16", data=lut)], [T((n,), "uint32")],
               snr_shift=shift)
    steps = [[log_uniform_u32(rng, (n,)), log_uniform_u32(rng, (n,))] for _ in range(3)]
    check_exact(p, steps)


def test_pcan_refuses_bad_types(tmp_path):
    p = one_op(tmp_path / "pcan.tflite", "SignalPCAN",
               [T((4,), "uint32"), T((4,), "uint32"), T((10,), "int16", data=np.zeros(10, np.int16))],
               [T((4,), "uint32")], snr_shift=1)
    refused(p, "gain table")


# ---------------------------------------------------------------------------
# SignalFramer

@pytest.mark.parity("SignalFramer", "int16")
@_settings(250)
@given(lead=st.lists(st.integers(1, 3), min_size=0, max_size=1), step=st.integers(1, 16),
       per_call=st.integers(1, 4), size=st.integers(1, 40), prefill=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_framer_matches_tflite_micro(tmp_path, lead, step, per_call, size, prefill, seed):
    if prefill and size < step:
        size = step
    rng = np.random.default_rng(seed)
    x_shape = tuple(lead) + (step * per_call,)
    p = one_op(tmp_path / "fr.tflite", "SignalFramer", [T(x_shape, "int16")],
               [T(tuple(lead) + (per_call, size), "int16"), T((), "bool")],
               frame_size=size, frame_step=step, prefill=prefill)
    steps = [[rand_int(rng, x_shape, "int16")] for _ in range(6)]
    for in_place in (True, False):
        expect, got = run_sequence(p, steps, reset_after=4, in_place=in_place)
        for k, (e, g) in enumerate(zip(expect, got)):
            assert bool(g[1]) == bool(e[1])
            call = k if k < 4 else k - 4
            # frame f of this call is written once frame_size samples have been buffered
            ready = [prefill or (call * per_call + f + 1) * step >= size for f in range(per_call)]
            for f in range(per_call):
                if ready[f]:
                    assert np.array_equal(g[0][..., f, :], e[0][..., f, :]), f"step {k} frame {f}"


def test_framer_refuses_bad_config(tmp_path):
    p = one_op(tmp_path / "fr.tflite", "SignalFramer", [T((10,), "int16")], [T((2, 8), "int16"), T((), "bool")],
               frame_size=8, frame_step=4, prefill=False)
    refused(p, "do not fit")
    p = one_op(tmp_path / "fr2.tflite", "SignalFramer", [T((8,), "int8")], [T((2, 8), "int8"), T((), "bool")],
               frame_size=8, frame_step=4, prefill=False)
    refused(p, "SignalFramer")


# ---------------------------------------------------------------------------
# SignalStacker

@pytest.mark.parity("SignalStacker", "int16")
@_settings(250)
@given(nch=st.integers(1, 16), left=st.integers(0, 4), right=st.integers(0, 4), step_frac=st.integers(0, 100),
       seed=st.integers(0, 2**31 - 1))
def test_stacker_matches_tflite_micro(tmp_path, nch, left, right, step_frac, seed):
    rng = np.random.default_rng(seed)
    span = left + right + 1
    step = 1 + (span - 1) * step_frac // 100
    p = one_op(tmp_path / "stk.tflite", "SignalStacker", [T((nch,), "int16")],
               [T((nch * span,), "int16"), T((), "bool")],
               num_channels=nch, stacker_left_context=left, stacker_right_context=right, stacker_step=step)
    steps = [[rand_int(rng, (nch,), "int16")] for _ in range(12)]
    for in_place in (True, False):
        expect, got = run_sequence(p, steps, reset_after=8, in_place=in_place)
        for k, (e, g) in enumerate(zip(expect, got)):
            assert bool(g[1]) == bool(e[1]), f"step {k}"
            if bool(e[1]):
                assert np.array_equal(g[0], e[0]), f"step {k}"


def test_stacker_refuses_bad_config(tmp_path):
    p = one_op(tmp_path / "stk.tflite", "SignalStacker", [T((4,), "int16")], [T((12,), "int16"), T((), "bool")],
               num_channels=4, stacker_left_context=1, stacker_right_context=1, stacker_step=4)
    refused(p, "step")
    p = one_op(tmp_path / "stk2.tflite", "SignalStacker", [T((4,), "float32")], [T((12,), "float32"), T((), "bool")],
               num_channels=4, stacker_left_context=1, stacker_right_context=1, stacker_step=1)
    refused(p, "SignalStacker")


# ---------------------------------------------------------------------------
# SignalDelay

@pytest.mark.parity("SignalDelay", "int16")
@_settings(250)
@given(lead=st.lists(st.integers(1, 3), min_size=0, max_size=2), frame=st.integers(1, 32),
       delay=st.integers(0, 50), seed=st.integers(0, 2**31 - 1))
def test_delay_matches_tflite_micro(tmp_path, lead, frame, delay, seed):
    rng = np.random.default_rng(seed)
    shape = tuple(lead) + (frame,)
    p = one_op(tmp_path / "d.tflite", "SignalDelay", [T(shape, "int16")], [T(shape, "int16")], delay_length=delay)
    check_exact(p, [[rand_int(rng, shape, "int16")] for _ in range(6)], reset_after=4)


def test_delay_refuses_bad_types(tmp_path):
    p = one_op(tmp_path / "d.tflite", "SignalDelay", [T((4,), "float32")], [T((4,), "float32")], delay_length=1)
    refused(p, "SignalDelay")


# ---------------------------------------------------------------------------
# SignalOverlapAdd

@pytest.mark.parametrize("dtype", [
    pytest.param("int16", marks=pytest.mark.parity("SignalOverlapAdd", "int16")),
    pytest.param("float32", marks=pytest.mark.parity("SignalOverlapAdd", "float32")),
])
@_settings(250)
@given(lead=st.lists(st.integers(1, 3), min_size=0, max_size=1), frames=st.integers(1, 4), size=st.integers(1, 32),
       step_frac=st.integers(0, 100), seed=st.integers(0, 2**31 - 1))
def test_overlap_add_matches_tflite_micro(tmp_path, dtype, lead, frames, size, step_frac, seed):
    rng = np.random.default_rng(seed)
    step = 1 + (size - 1) * step_frac // 100
    x_shape = tuple(lead) + (frames, size)
    p = one_op(tmp_path / "ola.tflite", "SignalOverlapAdd", [T(x_shape, dtype)],
               [T(tuple(lead) + (frames * step,), dtype)], T=TYPE_CODES[dtype], frame_step=step)
    if dtype == "int16":
        check_exact(p, [[rand_int(rng, x_shape, "int16")] for _ in range(6)], reset_after=4)
    else:  # float32 additions in TFLM's order: bit-exact, also on extreme values (huge, tiny, signed zeros)
        extremes = np.array([0.0, -0.0, 1e-45, -1e-45, 3.4e38, -3.4e38, 1e8, -1e8, 1.0, -1.0, 1e-7], np.float32)
        steps = [[rng.standard_normal(x_shape).astype(np.float32)] for _ in range(4)]
        steps += [[rng.choice(extremes, size=x_shape).astype(np.float32)] for _ in range(2)]
        check_exact(p, steps, reset_after=4)


def test_overlap_add_refuses_bad_config(tmp_path):
    p = one_op(tmp_path / "ola.tflite", "SignalOverlapAdd", [T((2, 4), "int16")], [T((10,), "int16")], T=7,
               frame_step=5)
    refused(p, "frame_step")
    p = one_op(tmp_path / "ola2.tflite", "SignalOverlapAdd", [T((2, 4), "int32")], [T((4,), "int32")], T=2,
               frame_step=2)
    refused(p, "SignalOverlapAdd")


# ---------------------------------------------------------------------------
# a whole front-end chain

def _front_end_model(path: Path, rng: np.random.Generator, n: int = 64, step: int = 32, size: int = 48,
                     nch: int = 8) -> Path:
    """Framer -> Window -> Rfft -> Energy -> FilterBank -> SquareRoot -> SpectralSubtraction -> PCAN -> Log
    -> Stacker: an audio front end on ``step``-sample chunks."""
    mb = ModelBuilder()
    sg = mb.subgraph()
    x = sg.tensor(T((step,), "int16"))
    fr, ok = sg.tensor(T((1, size), "int16")), sg.tensor(T((), "bool"))
    sg.op("custom:SignalFramer", [x], [fr, ok], custom_options=fb_options(frame_size=size, frame_step=step,
                                                                           prefill=True))
    win = sg.tensor(T((size,), "int16", data=(np.hanning(size) * 16384).astype(np.int16)))
    wo = sg.tensor(T((1, size), "int16"))
    sg.op("custom:SignalWindow", [fr, win], [wo], custom_options=fb_options(shift=12))
    spec = sg.tensor(T((1, n + 2), "int16"))
    sg.op("custom:SignalRfft", [wo], [spec], custom_options=fb_options(T=7, fft_length=n))
    flat = sg.tensor(T((n + 2,), "int16"))
    sg.op("RESHAPE", [spec, sg.tensor(T((1,), "int32", data=np.array([n + 2], np.int32)))], [flat])
    en = sg.tensor(T((n // 2 + 1,), "uint32"))
    sg.op("custom:SignalEnergy", [flat], [en], custom_options=fb_options(end_index=n // 2 + 1, start_index=0))
    fstart, wstart, width, n_w = _filterbank_config(rng, n // 2 + 1, nch)
    width = np.maximum(width, 1).astype(np.int16)
    fstart = np.minimum(fstart, n // 2 + 1 - width).astype(np.int16)
    wstart = np.concatenate([[0], np.cumsum(width)[:-1]]).astype(np.int16)
    n_w = int(width.sum())
    w = rng.integers(0, 4096, n_w).astype(np.int16)
    fb = sg.tensor(T((nch,), "uint64"))
    sg.op("custom:SignalFilterBank",
          [en, sg.tensor(T((n_w,), "int16", data=w)), sg.tensor(T((n_w,), "int16", data=(4096 - w).astype(np.int16))),
           sg.tensor(T((nch + 1,), "int16", data=fstart)), sg.tensor(T((nch + 1,), "int16", data=wstart)),
           sg.tensor(T((nch + 1,), "int16", data=width))], [fb], custom_options=fb_options(num_channels=nch))
    sq = sg.tensor(T((nch,), "uint32"))
    sg.op("custom:SignalFilterBankSquareRoot", [fb, sg.tensor(T((), "int32", data=np.array(3, np.int32)))], [sq])
    ss, noise = sg.tensor(T((nch,), "uint32")), sg.tensor(T((nch,), "uint32"))
    sg.op("custom:SignalFilterBankSpectralSubtraction", [sq], [ss, noise],
          custom_options=fb_options(alternate_one_minus_smoothing=15729, alternate_smoothing=655, clamping=False,
                                    min_signal_remaining=819, num_channels=nch, one_minus_smoothing=15729,
                                    smoothing=655, smoothing_bits=10, spectral_subtraction_bits=14))
    lut = rng.integers(-2000, 8000, 125).astype(np.int16)
    pc = sg.tensor(T((nch,), "uint32"))
    sg.op("custom:SignalPCAN", [ss, noise, sg.tensor(T((125,), "int16", data=lut))], [pc],
          custom_options=fb_options(snr_shift=6))
    lg = sg.tensor(T((nch,), "int16"))
    sg.op("custom:SignalFilterBankLog", [pc], [lg], custom_options=fb_options(input_correction_bits=3,
                                                                               output_scale=1600))
    stk, sv = sg.tensor(T((nch * 3,), "int16")), sg.tensor(T((), "bool"))
    sg.op("custom:SignalStacker", [lg], [stk, sv],
          custom_options=fb_options(num_channels=nch, stacker_left_context=1, stacker_right_context=1,
                                    stacker_step=1))
    sg.io([x], [lg, noise, stk, sv])
    return mb.write(path)


def test_audio_front_end_chain_matches_tflite_micro(tmp_path):
    """The chain of :func:`_front_end_model` on consecutive chunks (state carried by the stateful ops)."""
    rng = np.random.default_rng(7)
    p = _front_end_model(tmp_path / "frontend.tflite", rng)
    step = 32
    steps = [[(rng.standard_normal(step) * 3000).astype(np.int16)] for _ in range(10)]
    expect, got = run_sequence(p, steps, reset_after=7)
    for k, (e, g) in enumerate(zip(expect, got)):
        for j in (0, 1, 3):
            assert np.array_equal(g[j], e[j]), f"step {k} output {j}"
        if bool(e[3]):
            assert np.array_equal(g[2], e[2]), f"step {k} stack"


# ---------------------------------------------------------------------------
# CIRCULAR_BUFFER

@pytest.mark.parity("CIRCULAR_BUFFER", "int8")
@_settings(200)
@given(batch=st.integers(1, 2), slots=st.integers(1, 6), h=st.integers(1, 3), d=st.integers(1, 8),
       cycles=st.integers(-1, 3), with_valid=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_circular_buffer_matches_tflite_micro(tmp_path, batch, slots, h, d, cycles, with_valid, seed):
    rng = np.random.default_rng(seed)
    outs = [T((batch, slots, h, d), "int8", scale=0.1)] + ([T((1,), "bool")] if with_valid else [])
    p = one_op(tmp_path / "cb.tflite", "CIRCULAR_BUFFER", [T((batch, 1, h, d), "int8", scale=0.1)], outs,
               cycles_max=cycles)
    steps = [[rand_int(rng, (batch, 1, h, d), "int8")] for _ in range(slots + 4)]
    for in_place in (True, False):
        expect, got = run_sequence(p, steps, in_place=in_place)
        for k, (e, g) in enumerate(zip(expect, got)):
            if with_valid:
                assert bool(g[1][0]) == bool(e[1][0]), f"step {k}"
            if k >= slots - 1:  # before that the oldest slots hold whatever the arena held
                assert np.array_equal(g[0][0], e[0][0]), f"step {k}"


@pytest.mark.parity("CIRCULAR_BUFFER", "int8")
def test_circular_buffer_keeps_its_history_between_other_ops(tmp_path):
    """QUANTIZE -> CIRCULAR_BUFFER -> QUANTIZE: the history survives in-place plans of the ops around it."""
    mb = ModelBuilder()
    sg = mb.subgraph()
    x, x2 = sg.tensor(T((1, 1, 1, 8), "int8", scale=0.1)), sg.tensor(T((1, 1, 1, 8), "int8", scale=0.2))
    y, v = sg.tensor(T((1, 4, 1, 8), "int8", scale=0.2)), sg.tensor(T((1,), "bool"))
    z = sg.tensor(T((1, 4, 1, 8), "int8", scale=0.4))
    sg.op("QUANTIZE", [x], [x2])
    sg.op("custom:CIRCULAR_BUFFER", [x2], [y, v], custom_options=fb_options(cycles_max=2))
    sg.op("QUANTIZE", [y], [z])
    sg.io([x], [z, v])
    p = mb.write(tmp_path / "cbq.tflite")
    rng = np.random.default_rng(0)
    steps = [[rand_int(rng, (1, 1, 1, 8), "int8")] for _ in range(10)]
    for in_place in (True, False):
        expect, got = run_sequence(p, steps, in_place=in_place)
        for k, (e, g) in enumerate(zip(expect, got)):
            assert bool(g[1][0]) == bool(e[1][0])
            if k >= 3:
                assert np.array_equal(g[0], e[0]), f"step {k} (in_place={in_place})"


def test_circular_buffer_refuses_unsupported(tmp_path):
    p = one_op(tmp_path / "cb.tflite", "CIRCULAR_BUFFER", [T((1, 1, 1, 4), "int16")], [T((1, 3, 1, 4), "int16")],
               cycles_max=1)
    refused(p, "CIRCULAR_BUFFER")
    mb = ModelBuilder()
    sg = mb.subgraph()
    x, y, z = (sg.tensor(T(s, "int8", scale=0.1)) for s in ((1, 1, 1, 2), (1, 3, 1, 2), (1, 3, 1, 2)))
    sg.op("custom:CIRCULAR_BUFFER", [x], [y], custom_options=fb_options(cycles_max=2))
    sg.op("QUANTIZE", [y], [z])
    sg.io([x], [z])
    refused(mb.write(tmp_path / "cb2.tflite"), "aborts the rest of the graph")


# ---------------------------------------------------------------------------
# TFLM_DECODE (compressed constants: LUT, Huffman, prune)

def _decode_model(path: Path, enc: np.ndarray, anc: np.ndarray, out: T) -> Path:
    mb = ModelBuilder()
    sg = mb.subgraph()
    a = sg.tensor(T((enc.size,), "uint8", data=enc.astype(np.uint8)))
    b = sg.tensor(T((anc.size,), "uint8", data=anc.astype(np.uint8)))
    y = sg.tensor(out)
    sg.op("custom:TFLM_DECODE", [a, b], [y])
    sg.io([], [y])
    return mb.write(path)


def _header(scheme: int, b5: int = 0, b6: int = 0) -> np.ndarray:
    h = np.zeros(16, np.uint8)
    h[0], h[1], h[4], h[5], h[6] = scheme, 1, 1, b5, b6
    return h


def _channels(rng: np.random.Generator, shape: tuple[int, ...], layout: str) -> tuple[Any, int, int]:
    """(scale, axis, n_channels) for a layout: none, axis0, last."""
    if layout == "none" or (layout == "last" and shape[-1] < 2):
        return None, 0, 1
    axis = 0 if layout == "axis0" else len(shape) - 1
    n = shape[axis]
    return np.full(n, 0.1, np.float32), axis, n


def _random_values(rng: np.random.Generator, n: int, dtype: str) -> np.ndarray:
    if dtype == "float32":
        return rng.standard_normal(n).astype(np.float32)
    if dtype == "bool":
        return rng.integers(0, 2, n).astype(np.bool_)
    return rand_int(rng, (n,), dtype)


DECODE_TYPES = ["int8", "int16", "int32", "int64", "float32", "bool"]


def _dtype_params(op: str, types: Sequence[str]) -> list[Any]:
    return [pytest.param(t, marks=pytest.mark.parity(op, t)) for t in types]


@pytest.mark.parametrize("dtype", _dtype_params("TFLM_DECODE", DECODE_TYPES))
@_settings(100)
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=3), width=st.integers(1, 7),
       layout=st.sampled_from(["none", "axis0", "last"]), seed=st.integers(0, 2**31 - 1))
def test_decode_lut_matches_tflite_micro(tmp_path, dtype, shape, width, layout, seed):
    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    scale, axis, nch = _channels(rng, shape, layout)
    if dtype not in ("int8", "int16", "int32", "int64"):
        scale = None
    nch = 1 if scale is None else nch
    stride = int(rng.integers(1, 1 << width, endpoint=True))
    count = int(np.prod(shape))
    table = _random_values(rng, nch * stride, dtype)
    idx = rng.integers(0, stride, count)
    enc = np.packbits(((idx[:, None] >> np.arange(width - 1, -1, -1)) & 1).astype(np.uint8).ravel())
    anc = np.concatenate([_header(0, width, stride), table.view(np.uint8)])
    p = _decode_model(tmp_path / "lut.tflite", enc, anc, T(shape, dtype, scale=scale, axis=axis))
    check_exact(p, [[], []])


@pytest.mark.parametrize("dtype", _dtype_params("TFLM_DECODE", DECODE_TYPES))
@_settings(100)
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=3), layout=st.sampled_from(["none", "axis0", "last"]),
       density=st.floats(0, 1), seed=st.integers(0, 2**31 - 1))
def test_decode_prune_matches_tflite_micro(tmp_path, dtype, shape, layout, density, seed):
    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    scale, axis, nch = _channels(rng, shape, layout)
    zp: Any = 0
    if dtype == "int8" and scale is not None:
        zp = rng.integers(-128, 128, nch)
    elif dtype not in ("int16", "int32", "int64"):
        scale = None
    count = int(np.prod(shape))
    keep = rng.random(count) < density
    table = _random_values(rng, int(keep.sum()), dtype)
    anc = np.concatenate([_header(2), table.view(np.uint8)])
    p = _decode_model(tmp_path / "prune.tflite", np.packbits(keep.astype(np.uint8)), anc,
                      T(shape, dtype, scale=scale, zp=zp, axis=axis))
    check_exact(p, [[], []])


def _random_huffman_tables(rng: np.random.Generator, n: int, first_bits: int, wide: bool) -> np.ndarray:
    """Random chained tables in TFLM's format (pointers move strictly forward and stay in range)."""
    found, cshift, vmask = (0x80000000, 27, 0x07FFFFFF) if wide else (0x8000, 11, 0x07FF)
    tables = np.zeros(n, np.uint64)
    for i in range(n):
        bits = int(rng.integers(1, 5))
        room = n - i - (1 << bits)
        if i < (1 << first_bits) * 2 and room >= 1 and rng.random() < 0.3:
            off = int(rng.integers(1, min(room, vmask) + 1))
            tables[i] = ((bits - 1) << cshift) | off
        else:
            tables[i] = found | (int(rng.integers(0, 16)) << cshift) | int(rng.integers(0, vmask + 1))
    return tables.astype(np.uint32 if wide else np.uint16)


@pytest.mark.parametrize("dtype,wide", [
    pytest.param("int8", False, marks=pytest.mark.parity("TFLM_DECODE", "int8")),
    pytest.param("int8", True, marks=pytest.mark.parity("TFLM_DECODE", "int8")),
    pytest.param("int16", True, marks=pytest.mark.parity("TFLM_DECODE", "int16")),
])
@_settings(80)
@given(count=st.integers(1, 200), first_bits=st.integers(1, 6), seed=st.integers(0, 2**31 - 1))
def test_decode_huffman_matches_tflite_micro(tmp_path, dtype, wide, count, first_bits, seed):
    rng = np.random.default_rng(seed)
    tables = _random_huffman_tables(rng, (1 << first_bits) + int(rng.integers(0, 64)), first_bits, wide)
    anc = np.concatenate([_header(1, ((first_bits - 1) << 4) | int(wide)), tables.view(np.uint8)])
    enc = rng.integers(0, 256, count * 4 + 8).astype(np.uint8)
    p = _decode_model(tmp_path / "huff.tflite", enc, anc, T((count,), dtype))
    check_exact(p, [[], []])


def test_decode_refuses_unsupported(tmp_path):
    p = _decode_model(tmp_path / "a.tflite", np.zeros(4, np.uint8), _header(5), T((4,), "int8"))
    refused(p, "decode scheme 5")
    p = _decode_model(tmp_path / "b.tflite", np.zeros(4, np.uint8), _header(1, 0x10), T((4,), "int16"))
    refused(p, "Huffman decoding into INT16")


@pytest.mark.parametrize("n", [64, 512])
def test_front_end_invoke_does_not_allocate(tmp_path, n):
    """Steady-state invokes of the whole front end keep memory flat (numpy's transient iterator buffers aside)."""

    rng = np.random.default_rng(1)
    step = n // 2
    p = _front_end_model(tmp_path / "fe.tflite", rng, n=n, step=step, size=n, nch=16)
    m = open_model(str(p))
    it = m.interpreter
    it.set_input(0, (rng.standard_normal(step) * 3000).astype(np.int16))
    grown, peak = traced_allocations(it.invoke, 200, warmup=20, traced_warmup=5)
    assert grown <= 4 * 1024, f"grew by {grown} bytes"
    assert peak <= 80 * 1024, f"per-call peak {peak} bytes"
