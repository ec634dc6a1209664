"""The report's faster per-layer statistics give exactly what straightforward numpy gives.

- :class:`converters.report._Energies` (one float64 copy per tensor, small int8/int16 tensors of equal
  size summed as the rows of one array) sums, sample after sample, the same float64 signal and noise
  energies as ``np.sum(np.square(f.astype(np.float64)))`` and ``np.sum(np.square(f64 - q))`` written out
  below, on random tensors and edge cases (all-equal values, zeros, float32 extremes, saturated int8
  and int16, sizes around numpy's pairwise-summation blocks), and skips what the plain loop skips;
- :func:`converters.report.compare_on_samples` (the int8 model two samples ahead and the float model
  one sample ahead, each in its own thread) gives the rows and outputs of a plain serial loop, and the
  report.json of a converted digits model (int8 and int16 activations) holds those rows and the
  output statistics of those outputs; a failing run reaches the caller and leaves no thread behind.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

import converters.calibrate as cal
from converters.calibrate import FloatRuns, float_session, run_float
from converters.calibration_data import open_calibration
from converters.pipeline import convert_model
from converters.quality.metrics import compare_outputs, grade, output_kinds, sqnr_db
from converters.report import FLAG_TOP, ROWS_VALUES, SMALL_TENSOR, TFLiteRunner, _Energies, compare_on_samples

DATA = Path(__file__).resolve().parent.parent / "converters" / "data"


def _details(q: np.ndarray, scale: float, zp: int) -> dict:
    return {"dtype": q.dtype.type, "quantization": (scale, zp)}


def _reference_energy(fv: np.ndarray, q: np.ndarray, d: dict) -> tuple[float, float] | None:
    """One sample of one tensor, written out plainly; None where the report has no SQNR."""
    if q.size != fv.size or fv.dtype.kind != "f":
        return None
    if q.dtype in (np.int8, np.int16):
        s, zp = d["quantization"]
        qv = (q.astype(np.float32) - np.float32(zp)) * np.float32(s)
    else:
        qv = q.astype(np.float32)
    if qv.shape != fv.shape:
        return None
    f64 = fv.astype(np.float64)
    return float(np.sum(np.square(f64))), float(np.sum(np.square(f64 - qv)))


def _reference_sums(samples: list[list[tuple[str, np.ndarray, np.ndarray, dict]]]) -> tuple[dict, dict]:
    sig: dict[str, float] = {}
    noise: dict[str, float] = {}
    for tensors in samples:
        for t, fv, q, d in tensors:
            e = _reference_energy(fv, q, d)
            if e is not None:
                sig[t] = sig.get(t, 0.0) + e[0]
                noise[t] = noise.get(t, 0.0) + e[1]
    return sig, noise


def _tensor(rng: np.random.Generator, kind: str, shape: tuple[int, ...], qtype: type = np.int8,
            ) -> tuple[np.ndarray, np.ndarray, dict]:
    """A float tensor and its stored int8/int16 counterpart for one of the edge cases."""
    info = np.iinfo(qtype)
    n = int(np.prod(shape))
    scale, zp = float(rng.uniform(1e-3, 0.2)), int(rng.integers(info.min // 2, info.max // 2))
    if kind == "random":
        fv = (rng.standard_normal(n) * 10 ** rng.uniform(-3, 3, n)).astype(np.float32)
    elif kind == "equal":
        fv = np.full(n, np.float32(rng.uniform(-5, 5)), np.float32)
    elif kind == "zeros":
        fv = np.zeros(n, np.float32)
    elif kind == "extremes":  # float32's largest and smallest magnitudes, both signs, no NaN or infinity
        f32 = np.finfo(np.float32)
        pool = np.array([f32.max, -f32.max, f32.tiny, -f32.tiny, f32.smallest_subnormal, 0.0, 1.0, -1e30, 1e-30],
                        np.float32)
        fv = rng.choice(pool, n)
    elif kind == "saturated":  # far beyond the int8/int16 range: every stored value at its limit
        fv = (rng.choice([-1.0, 1.0], n) * rng.uniform(1e3, 1e6, n)).astype(np.float32)
    else:
        raise ValueError(kind)
    if kind == "saturated":
        q = np.where(fv > 0, info.max, info.min).astype(qtype)
    elif kind == "zeros":
        q = np.full(n, zp, qtype)
    else:
        q = np.clip(np.round(fv.astype(np.float64) / scale) + zp, info.min, info.max).astype(qtype)
    return fv.reshape(shape), q.reshape(shape), _details(q, scale, zp)


#: sizes around numpy's pairwise blocks (8, 128), the small-tensor limit and beyond
SIZES = [1, 3, 7, 8, 9, 64, 127, 128, 129, 130, 255, 1000, 1024, SMALL_TENSOR - 1, SMALL_TENSOR,
         SMALL_TENSOR + 1, 3 * SMALL_TENSOR + 17]
KINDS = ["random", "equal", "zeros", "extremes", "saturated"]


def _random_samples(seed: int, n_samples: int = 3) -> list[list[tuple[str, np.ndarray, np.ndarray, dict]]]:
    """Samples of many tensors: every size and kind, several tensors of each size (summed as rows of one
    array), int8 and int16, in 1-D and 4-D shapes; the same tensor names and parameters every sample."""
    rng = np.random.default_rng(seed)
    layout = []
    for size in SIZES:
        many = size in (SMALL_TENSOR - 1, SMALL_TENSOR)  # more int8 tensors of this size than one array takes
        for k in range(3 * ROWS_VALUES // size if many else 3):
            shape = (1, 1, size, 1) if k % 2 else (size,)
            layout.append((f"t{size}_{k}", shape, np.int16 if k % 3 == 2 else np.int8, KINDS[(size + k) % len(KINDS)]))
    samples = []
    params: dict[str, dict] = {}
    for _ in range(n_samples):
        tensors = []
        for name, shape, qtype, kind in layout:
            fv, q, d = _tensor(rng, kind, shape, qtype)
            d = params.setdefault(name, d)  # a tensor keeps its scale and zero point across samples
            tensors.append((name, fv, q, d))
        samples.append(tensors)
    return samples


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_energies_equal_the_plain_float64_sums(seed):
    samples = _random_samples(seed)
    sig, noise = _reference_sums(samples)
    batched, single = _Energies(), _Energies()
    for tensors in samples:
        batched.add_sample(iter(tensors))
        for t in tensors:
            single.add(*t)
    assert len(sig) == len(samples[0])
    assert batched.signal == sig and batched.noise == noise  # equal to the last bit
    assert single.signal == sig and single.noise == noise


def test_each_edge_case_alone_and_with_others():
    rng = np.random.default_rng(5)
    for kind in KINDS:
        for qtype in (np.int8, np.int16):
            tensors = [(f"{kind}{i}", *_tensor(rng, kind, (1, 4, 4, 8), qtype)) for i in range(4)]
            for group in ([tensors[0]], tensors):
                e = _Energies()
                e.add_sample(iter(group))
                sig, noise = _reference_sums([group])
                assert e.signal == sig and e.noise == noise, (kind, qtype)
    e = _Energies()
    fv, q, d = _tensor(rng, "zeros", (64,))
    e.add_sample([("z", fv, q, d), ("z2", fv.copy(), q.copy(), d)])
    assert e.signal == {"z": 0.0, "z2": 0.0} and e.noise == {"z": 0.0, "z2": 0.0}
    assert sqnr_db(e.signal["z"], e.noise["z"]) == 99.0


def test_what_has_no_sqnr_is_skipped_and_other_types_follow_the_plain_path():
    rng = np.random.default_rng(3)
    fv, q, d = _tensor(rng, "random", (1, 4, 8))
    idx = rng.integers(0, 5, 32).astype(np.int32)
    tensors = [
        ("reshaped", fv, q.reshape(4, 8), d),                     # same size, other shape: no SQNR
        ("smaller", fv, q[:, :2], d),                             # other size: no SQNR
        ("indices", idx.astype(np.int32), idx, _details(idx, 0.0, 0)),  # an int float value: no SQNR
        ("float_island", fv, (fv * np.float32(1.01)).astype(np.float32), _details(fv, 0.0, 0)),
        ("mask", fv, (fv > 0).astype(np.int32), {"dtype": np.int32, "quantization": (0.0, 0)}),
        ("ok", fv, q, d),
        ("ok2", fv + np.float32(1), q, d),
    ]
    e = _Energies()
    e.add_sample(iter(tensors))
    sig, noise = _reference_sums([tensors])
    assert set(e.signal) == {"float_island", "mask", "ok", "ok2"} == set(sig)
    assert e.signal == sig and e.noise == noise


def _plain_rows(graph, sess, runner: TFLiteRunner, xs: list[np.ndarray]):  # type: ignore[no-untyped-def]
    """The per-layer rows and stacked outputs of a plain serial loop with the plain sums above."""
    name = graph.inputs[0]
    sig: dict[str, float] = {}
    noise: dict[str, float] = {}
    f_out: dict[str, list] = {o: [] for o in graph.outputs}
    q_out: dict[str, list] = {o: [] for o in graph.outputs}
    for x in xs:
        x_ir = graph.to_ir_layout(name, x)
        fvals = run_float(sess, graph, x_ir)
        outs = runner.run(x_ir)
        for o, qv in zip(graph.outputs, outs):
            f_out[o].append(fvals[o].reshape(-1))
            q_out[o].append(qv.reshape(-1))
        for t, fv in fvals.items():
            d = runner.by_name.get(t)
            if d is None:
                continue
            e = _reference_energy(fv, runner.it.get_tensor(d["index"]), d)
            if e is not None:
                sig[t] = sig.get(t, 0.0) + e[0]
                noise[t] = noise.get(t, 0.0) + e[1]
    in_db = sqnr_db(sig[name], noise[name]) if name in sig else None
    rows = [{"index": -1, "op": "INPUT", "name": name, "tensor": name,
             "sqnr_db": None if in_db is None else round(in_db, 2), "loss_db": 0.0}]
    db = {name: in_db}
    for i, op in enumerate(graph.ops):
        t = op.outputs[0]
        if t in sig:
            db[t] = sqnr_db(sig[t], noise[t])
            ins = [db[s] for s in op.inputs if db.get(s) is not None]
            rows.append({"index": i, "op": op.kind, "name": op.name, "tensor": t, "sqnr_db": round(db[t], 2),
                         "loss_db": round(min(ins) - db[t], 2) if ins else 0.0})
    worst = sorted((r for r in rows if r["index"] >= 0), key=lambda r: -r["loss_db"])[:FLAG_TOP]
    for r in rows:
        r["flagged"] = any(w is r for w in worst) and r["loss_db"] > 0.5
        r["grade"] = grade(r["sqnr_db"])
    return rows, {o: np.stack(v) for o, v in f_out.items()}, {o: np.stack(v) for o, v in q_out.items()}


@pytest.fixture(scope="module", params=["int8", "int16"])
def digits_conversion(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp(f"digits_{request.param}")
    res = convert_model(DATA / "digits_cnn.onnx", "rpi4-4gb", DATA / "digits_calib.npz", out,
                        activations=request.param, plot=False)
    graph = res.graph
    data = open_calibration(DATA / "digits_calib.npz", graph.source_shape(graph.inputs[0]), graph.inputs[0])
    return res, [x for i, x in enumerate(data) if i < 32]


def test_report_json_holds_the_plain_rows_and_output_statistics(digits_conversion):
    res, xs = digits_conversion
    graph = res.graph
    rows, f_out, q_out = _plain_rows(graph, float_session(graph), TFLiteRunner(res.tflite_path, preserve=True), xs)
    report = json.loads(Path(res.report_path).read_text())
    assert len(rows) == len(graph.ops) + 1 and all(r["sqnr_db"] is not None for r in rows)
    assert report["layers"] == rows
    plain_outputs = compare_outputs(graph.outputs, output_kinds(graph), f_out, q_out)
    assert report["calibration_outputs"] == json.loads(json.dumps(plain_outputs, default=float))


@pytest.mark.parametrize("threads", ["background", "caller"])
def test_compare_on_samples_gives_the_serial_rows_and_outputs(digits_conversion, threads, monkeypatch):
    res, xs = digits_conversion
    graph = res.graph
    sess = float_session(graph)
    runner = TFLiteRunner(res.tflite_path, preserve=True)
    plain = _plain_rows(graph, sess, runner, xs)
    # background: both models in their threads (every run counts as slow); caller: all serial
    monkeypatch.setattr(cal, "AHEAD_MIN_S", 0.0 if threads == "background" else 1e9)
    runs = FloatRuns(graph, sess, keep_bytes=40_000)  # a few samples remembered, the rest run again
    for _ in runs.stream(xs):
        pass
    before = threading.active_count()
    for float_values in (None, runs):
        rows, f_out, q_out = compare_on_samples(graph, sess, runner, iter(xs), float_values=float_values)
        assert rows == plain[0]
        for got, ref in ((f_out, plain[1]), (q_out, plain[2])):
            assert got.keys() == ref.keys()
            assert all(got[k].dtype == ref[k].dtype and np.array_equal(got[k], ref[k]) for k in ref)
    assert threading.active_count() == before
    assert 0 < runs.kept < len(xs)


def test_a_failing_run_reaches_the_caller_and_leaves_no_thread(digits_conversion, monkeypatch):
    res, xs = digits_conversion
    graph = res.graph
    sess = float_session(graph)
    runner = TFLiteRunner(res.tflite_path, preserve=True)
    monkeypatch.setattr(cal, "AHEAD_MIN_S", 0.0)
    run = runner.run
    calls = []

    def failing(x):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("int8 run 5 failed")
        return run(x)

    monkeypatch.setattr(runner, "run", failing)
    with pytest.raises(RuntimeError, match="int8 run 5"):
        compare_on_samples(graph, sess, runner, iter(xs))
    assert not [t for t in threading.enumerate() if t.name.startswith("converter-ahead")]


def test_held_out_float_runs_fetch_only_the_outputs_with_the_same_values(digits_conversion, monkeypatch):
    """evaluate_held_out asks the float session for the graph outputs only: the same values and statistics
    as fetching every activation, and fewer tensors copied out."""
    import converters.report as rep

    res, xs = digits_conversion
    graph = res.graph
    sess = float_session(graph)
    x = np.stack(xs[:8])
    runners = {"tflite": TFLiteRunner(res.tflite_path).run}
    fetched: list[int] = []

    def counting(sess_, graph_, x_ir, only=None):  # type: ignore[no-untyped-def]
        out = run_float(sess_, graph_, x_ir, only=only)
        fetched.append(len(out))
        return out

    monkeypatch.setattr(rep, "run_float", counting)
    stats, arr = rep.evaluate_held_out(graph, sess, runners, x, None)
    assert fetched and max(fetched) <= len(graph.outputs) + 1  # the outputs (and the input)
    monkeypatch.setattr(rep, "run_float", lambda s, g, xi, only=None: run_float(s, g, xi))
    stats_all, arr_all = rep.evaluate_held_out(graph, sess, runners, x, None)
    assert json.dumps(stats, default=float) == json.dumps(stats_all, default=float)
    for k in arr_all:
        assert all(np.array_equal(arr[k][o], arr_all[k][o]) for o in arr_all[k])
