"""Run int8 ONNX models on the OpenVINO EP and on ORT's CPU EP; compare outputs, time both, report placement.

Runs inside the onnxruntime-openvino venv (``benchmarks/_openvino_venv.py``), with this
repository on ``PYTHONPATH``: ``python -m benchmarks._openvino_run SPEC.json OUT.json``.
SPEC is a list of ``{"name", "onnx", "inputs", "runs", "compare_onnx", "threads"}`` (``inputs``: an .npz with ``x``,
one batch row per inference); OUT receives one record per model. The OpenVINO EP comes
from the ``intel-n100`` device profile with ``require_accelerator=True``.

``python -m benchmarks._openvino_run --probe SPEC.json``: the divergence data of
``benchmarks/_openvino_divergence.py`` (:func:`probe`), on bare 1-thread sessions.
"""
from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np

PROFILE = "intel-n100"


def _outputs(model: Any, xs: np.ndarray) -> list[np.ndarray]:
    """Every output of ``model`` for each row of ``xs``, stacked: one (N, size) array per output."""
    ys = [model.run([x]) for x in xs]
    return [np.stack([y[i].reshape(-1) for y in ys]) for i in range(len(ys[0]))]


def _lsb(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.max(np.abs(a.astype(np.int64) - b.astype(np.int64))))


def _within_1(a: np.ndarray, b: np.ndarray) -> float:
    """The share of values that differ by at most 1."""
    return float(np.mean(np.abs(a.astype(np.int64) - b.astype(np.int64)) <= 1))


def _median_ms(models: list[Any], x: np.ndarray, runs: int) -> list[float]:
    """Median latency of each model, timed in alternation so that both see the same machine load."""
    for _ in range(min(5, runs)):
        for m in models:
            m.run([x])
    t = np.empty((runs, len(models)))
    for i in range(runs):
        for j, m in enumerate(models):
            t0 = time.perf_counter()
            m.run([x])
            t[i, j] = time.perf_counter() - t0
    return [float(v) for v in np.median(t, axis=0) * 1e3]


def ov_threads(n: int) -> dict[str, str]:
    """OpenVINO EP options for ``n`` threads in one stream, unpinned: without them OpenVINO pins its threads, and
    on a machine shared with other work its latency jumps tenfold (vww: p90 2.3 ms instead of 0.35 ms)."""
    cpu = {"INFERENCE_NUM_THREADS": str(n), "NUM_STREAMS": "1", "ENABLE_CPU_PINNING": "NO"}
    return {"num_of_threads": str(n), "load_config": json.dumps({"CPU": cpu})}


KEYS = ("providers", "accelerator", "provider_options", "node_placement", "kernels_run", "cpu_ops", "placement_source")


def compare(name: str, onnx_path: str, inputs: str, runs: int, compare_onnx: str | None = None,
            threads: int | None = None) -> dict[str, Any]:
    """One model: latency and placement on the OpenVINO EP and the CPU EP; int8 outputs of both and of ORT's
    unoptimised CPU session (plain QDQ semantics, ``ref``) on every input, for every output of ``compare_onnx``
    (the same model with extra outputs, e.g. the quantized logits before a softmax). ``threads``: for both EPs
    (:func:`ov_threads`); None keeps the profile's (ORT) and OpenVINO's own choice."""
    import onnxruntime

    import edge_runtime

    xs = np.load(inputs)["x"]
    rec: dict[str, Any] = {"name": name, "onnxruntime": onnxruntime.__version__, "n": len(xs)}
    opts: dict[str, Any] = {} if threads is None else {"threads": threads, "accelerator_options": ov_threads(threads)}
    with edge_runtime.load(onnx_path, backend="onnx", profile=PROFILE, require_accelerator=True, **opts) as ov, \
            edge_runtime.load(onnx_path, backend="onnx", profile=PROFILE, accelerator="none",
                              threads=threads) as cpu:
        ov_ms, cpu_ms = _median_ms([ov, cpu], xs[0], runs)
        rec.update(ov_ms=ov_ms, cpu_ms=cpu_ms, ov={k: ov.info.get(k) for k in KEYS}, cpu={k: cpu.info.get(k) for k in KEYS})
    path = compare_onnx or onnx_path
    with edge_runtime.load(path, backend="onnx", profile=PROFILE, require_accelerator=True) as ov, \
            edge_runtime.load(path, backend="onnx", profile=PROFILE, accelerator="none") as cpu, \
            edge_runtime.load(path, backend="onnx", profile=PROFILE, accelerator="none",
                              graph_optimization="disable") as ref:
        y_ov, y_cpu, y_ref = _outputs(ov, xs), _outputs(cpu, xs), _outputs(ref, xs)
        rec["outputs"] = [{"name": spec.name, "dtype": str(a.dtype), "ov_vs_cpu": _lsb(a, b), "cpu_vs_ref": _lsb(b, r),
                           "ov_vs_ref": _lsb(a, r), "ov_vs_cpu_within_1": _within_1(a, b)}
                          for spec, a, b, r in zip(ov.outputs, y_ov, y_cpu, y_ref)]
    rec["top1_agree"] = int(np.sum(y_ov[0].argmax(1) == y_cpu[0].argmax(1)))
    rec["y_ov"], rec["y_cpu"] = y_ov[0].tolist(), y_cpu[0].tolist()
    return rec


def probe_session(path: str, kind: str, variant: dict[str, Any] | None = None) -> Any:
    """A bare onnxruntime session, 1 thread: ``ov`` (the profile's OpenVINO-on-CPU options), ``cpu`` (ORT's CPU EP,
    all graph optimisations) or ``ref`` (CPU EP, optimisations off: plain QDQ semantics). ``variant``: extra
    ``ov_options`` (provider options), ``ov_cpu`` (OpenVINO CPU properties, in ``load_config``) and ``session_config``
    (ORT session config entries)."""
    import onnxruntime

    v = variant or {}
    so = onnxruntime.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    for key, value in v.get("session_config", {}).items():
        so.add_session_config_entry(key, value)
    if kind == "ref":
        so.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    if kind != "ov":
        return onnxruntime.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    opts = {"device_type": "CPU", "precision": "ACCURACY", **ov_threads(1)}
    cpu = {**json.loads(opts["load_config"])["CPU"], **v.get("ov_cpu", {})}
    opts.update(load_config=json.dumps({"CPU": cpu}), **v.get("ov_options", {}))
    return onnxruntime.InferenceSession(path, so,
                                        providers=[("OpenVINOExecutionProvider", opts), "CPUExecutionProvider"])


def _each(sess: Any, feeds: list[np.ndarray]) -> list[np.ndarray]:
    """Every output of ``sess`` for each row of ``feeds`` (one array per model input), flattened and stacked."""
    names = [i.name for i in sess.get_inputs()]
    ys = [sess.run(None, {n: f[j] for n, f in zip(names, feeds)}) for j in range(len(feeds[0]))]
    return [np.stack([y[i].reshape(-1) for y in ys]) for i in range(len(ys[0]))]


class _Bare:
    """A bare session with the ``run([x])`` of a loaded model, for :func:`_median_ms`."""

    def __init__(self, sess: Any) -> None:
        self.sess, self.name = sess, sess.get_inputs()[0].name

    def run(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        return self.sess.run(None, {self.name: xs[0]})


def probe(entry: dict[str, Any], inputs: str) -> None:
    """Divergence data of one model (``benchmarks/_openvino_divergence.py`` reads it): on each EP the unmodified
    model's output, the probe model's outputs, the logits model's outputs (also under each of ``entry["variants"]``:
    other OpenVINO or ORT options, with the median ms of 50 inferences), each truncated model's output, and every
    isolated op fed the plain-QDQ int8 values of its inputs (saved too). Writes ``entry["out"]`` (.npz)."""
    xs = np.load(inputs)["x"]
    res: dict[str, np.ndarray] = {}
    ref_values: dict[str, np.ndarray] = {}
    for ep in ("ref", "ov", "cpu"):  # ref first: its tensors feed the isolated ops
        res[f"final|{ep}"] = _each(probe_session(entry["onnx"], ep), [xs])[0]
        for i, y in enumerate(_each(probe_session(entry["probe_onnx"], ep), [xs])):
            res[f"probe|{ep}|{i}"] = y
            if ep == "ref":
                ref_values[entry["probe_names"][i]] = y
        for i, y in enumerate(_each(probe_session(entry["compare_onnx"], ep), [xs])):
            res[f"cmp|{ep}|{i}"] = y
    for k, var in enumerate(entry.get("variants", [])):
        sess = probe_session(entry["compare_onnx"], var["ep"], var)
        for i, y in enumerate(_each(sess, [xs])):
            res[f"variant{k}|{i}"] = y
        res[f"variant{k}|ms"] = np.array(_median_ms([_Bare(sess)], xs[0], 50)[0])
    for k, pre in enumerate(entry["prefixes"]):
        for ep in ("ov", "cpu"):
            res[f"prefix{k}|{ep}"] = _each(probe_session(pre["path"], ep), [xs])[0]
    for k, op in enumerate(entry["ops"]):
        feeds = [ref_values.get(n, xs).reshape([len(xs), *shape]) for n, shape in zip(op["inputs"], op["in_shapes"])]
        for j, f in enumerate(feeds):
            res[f"op{k}|feed{j}"] = f
        for ep in ("ov", "cpu", "ref"):
            res[f"op{k}|{ep}"] = _each(probe_session(op["path"], ep), feeds)[0]
    np.savez(entry["out"], **res)


def main(argv: list[str]) -> int:
    """Read SPEC, write OUT; with ``--probe SPEC``, write each entry's divergence data (:func:`probe`)."""
    if len(argv) == 2 and argv[0] == "--probe":
        with open(argv[1], encoding="utf-8") as f:
            for entry in json.load(f):
                probe(entry, entry["inputs"])
        return 0
    if len(argv) != 2:
        print("usage: python -m benchmarks._openvino_run SPEC.json OUT.json | --probe SPEC.json", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        spec = json.load(f)
    out = [compare(s["name"], s["onnx"], s["inputs"], int(s.get("runs", 100)), s.get("compare_onnx"),
                   s.get("threads")) for s in spec]
    with open(argv[1], "w", encoding="utf-8") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
