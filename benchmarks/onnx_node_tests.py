"""The ``onnx`` wheel's node conformance tests (one ONNX op per model, every attribute and opset variant),
converted to int8 by us and run by micro, tflite-micro and LiteRT.

``python -m benchmarks.onnx_node_tests [--ops Relu,Conv] [--cases test_x] [--markdown | --json] [--timeout S]
[--workers N] [--chunk N] [--rows FILE]``

The cases come from ``onnx.backend.test.case.node.collect_testcases()`` (1,884 in onnx 1.23); generating
them takes ~16 s, so they are cached (serialized models and data sets) under
``.cache/onnx_node_tests/<onnx version>/cases.pkl``. A case is skipped, with the reason, when it has no
graph input, its first input is not a float tensor (int/bool/string), an input is a sequence or an
optional, a reference output is not a float tensor, or the op is random (RandomNormal, Bernoulli,
training-mode Dropout...), where int8 and the reference cannot be compared.

Each node test feeds every operand as a graph input, where an exported model holds weights, shapes and
axes as initializers. So inputs after the first that are not float (shapes, indices, axes) become
initializers holding the case's values; float ones stay graph inputs, and when the converter refuses that,
the conversion is tried again with them as initializers too (``converted, inputs frozen``; the first
refusal is kept as ``live_error``). A refusal with several graph inputs whose message is the converter's
"N inputs are not supported" is counted as ``several inputs``. onnx stamps a case with the newest opset
even when its op has not changed since; the converter itself reads such a model as its newest opset
where every node means the same there (:func:`converters.importers.prepare.read_as_opset`).

The model is converted by ``converters.pipeline.convert_model`` (profile rpi4-4gb; the case's input
shapes) with the calibration :func:`benchmarks.onnx_backend_models.calibration` builds from the case's
input data (per input, seed = the input's index; a dict for several inputs). Per converted case: micro ==
tflite-micro (``np.array_equal``, :func:`benchmarks.onnx_backend_models.micro_equal`) on the case's inputs,
and the SQNR (dB; the lowest over the outputs) of our int8 .tflite run by LiteRT against the case's
reference output (the onnx package's numpy reference implementation).

Cases run in ``--workers`` (default 2) worker processes that take chunks of ``--chunk`` (default 50) cases;
a worker that dies (a native crash, a bug) is restarted on the rest of its chunk and the case it was on
becomes a ``crashed`` row; a case that takes longer than ``--timeout`` seconds (default 60) is stopped the
same way and reported as skipped. All 1,884 cases take ~4 min with 2 workers. Exit status 1 when a
converted case's micro differs from tflite-micro, a refusal is not one clean line, or a case crashed.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from benchmarks.onnx_backend_models import (
    CLEAN_ERRORS,
    PROFILE,
    _in_graph_order,
    _one_line,
    _sqnr,
    calibration,
    micro_equal,
)

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 60.0
CHUNK = 50
WORKERS = 2
#: ops whose output is random: an int8 result cannot be compared with the reference
RANDOM_OPS = ("Bernoulli", "Multinomial", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike")
#: the converter's refusal of a model with more graph inputs than it takes
SEVERAL_INPUTS = re.compile(r"\d+ inputs are not supported")


def cache_path() -> Path:
    """Where the generated cases of the installed onnx version are pickled."""
    import onnx

    return ROOT / ".cache" / "onnx_node_tests" / onnx.__version__ / "cases.pkl"


def load_cases() -> list[dict[str, Any]]:
    """Every node test case as ``{name, model (serialized ModelProto), data_sets, rtol, atol}``, from the cache
    or generated (and cached) with ``collect_testcases()``."""
    path = cache_path()
    if path.is_file():
        with open(path, "rb") as f:
            return pickle.load(f)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import onnx.backend.test.case.node as node_cases

        cases = node_cases.collect_testcases()
    rows = [{"name": c.name, "model": c.model.SerializeToString(),
             "data_sets": [([_array(v) for v in xs], [_array(v) for v in ys]) for xs, ys in c.data_sets],
             "rtol": c.rtol, "atol": c.atol} for c in cases if c.model is not None and c.data_sets]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(rows, f)
    os.replace(tmp, path)
    return rows


def _array(v: Any) -> Any:
    """A ``TensorProto`` in a data set as a numpy array (unreadable ones stay as they are); others unchanged."""
    import onnx
    from onnx import numpy_helper

    if isinstance(v, onnx.TensorProto):
        try:
            return numpy_helper.to_array(v)
        except Exception:  # noqa: BLE001 - an exotic element type: the case is skipped for it
            return v
    return v


def case_ops(model_bytes: bytes) -> list[str]:
    """The op types of a case's model, in node order, without repeats."""
    import onnx

    m = onnx.ModelProto()
    m.ParseFromString(model_bytes)
    return list(dict.fromkeys(n.op_type for n in m.graph.node))


def _kind(v: Any) -> str:
    """What a data-set value is, for skip reasons."""
    if v is None:
        return "an empty optional"
    if isinstance(v, list):
        return "a sequence"
    if isinstance(v, dict):
        return "a map"
    if not isinstance(v, np.ndarray):
        return type(v).__name__
    return str(v.dtype)


def _data(case: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """The first data set's inputs and reference outputs, numpy scalars as 0-d arrays."""
    xs, ys = case["data_sets"][0]
    fix = (lambda v: np.asarray(v) if isinstance(v, np.generic) else v)
    return [fix(x) for x in xs], [fix(y) for y in ys]


def _is_float(v: Any) -> bool:
    return isinstance(v, np.ndarray) and v.dtype.kind == "f"


def skip_reason(case: dict[str, Any], model: Any) -> Optional[str]:
    """Why a case is not converted, or None. Only the first input must be a float tensor: later non-float
    inputs (shapes, indices, axes) are frozen as constants, as a real model has them."""
    ops = [n.op_type for n in model.graph.node]
    random = [o for o in ops if o in RANDOM_OPS]
    if random:
        return f"random op ({random[0]})"
    if any(o == "Dropout" for o in ops) and "training" in case["name"]:
        return "random op (Dropout in training mode)"
    inits = {i.name for i in model.graph.initializer}
    real = [vi for vi in model.graph.input if vi.name not in inits]
    xs, ys = _data(case)
    if not real:
        return "no graph input"
    for k, x in enumerate(xs):
        if not isinstance(x, np.ndarray):
            return f"an input is {_kind(x)}"
        if k == 0 and not _is_float(x):
            return f"the first input is {_kind(x)}, not float"
    for y in ys:
        if not _is_float(y):
            return f"a reference output is {_kind(y)}, not float"
    return None


def frozen_model(model: Any, frozen: dict[str, np.ndarray]) -> Any:
    """A copy of ``model`` whose inputs named in ``frozen`` are initializers holding those values (as an
    exported model holds its weights, shapes and axes)."""
    from onnx import numpy_helper

    if not frozen:
        return model
    m = type(model)()
    m.CopyFrom(model)
    keep = [vi for vi in m.graph.input if vi.name not in frozen]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    m.graph.initializer.extend(numpy_helper.from_array(np.asarray(v), n) for n, v in frozen.items())
    return m


def _convert(src: str, calib: Any, out: str, shapes: dict) -> tuple[Any, Optional[dict]]:
    """``convert_model`` of ``src``: (result, None) or (None, the refusal as row fields)."""
    from converters.pipeline import convert_model

    try:
        return convert_model(src, PROFILE, calib, out, plot=False, report_samples=8, input_shapes=shapes), None
    except Exception as exc:  # noqa: BLE001 - every refusal is a row
        return None, {"error": _one_line(exc).replace(src + ": ", "").replace(src, "<model>"),
                      "error_type": type(exc).__name__, "error_lines": len(str(exc).strip().splitlines())}


def measure_case(case: dict[str, Any], emit: Callable[[dict], None] = lambda row: None) -> dict[str, Any]:
    """One row: the skip reason, or our conversion (or its one-line refusal), micro == tflite-micro and the
    SQNR of our int8 against the reference output. Non-float inputs after the first are frozen as constants
    (initializers, :func:`frozen_model`); float ones stay inputs, and when the converter refuses that, the conversion is tried
    again with them frozen too (``frozen`` lists them; ``live_error`` keeps the first refusal). ``emit`` is
    given the row before tflite-micro runs (it may abort the process)."""
    import onnx

    model = onnx.ModelProto()
    model.ParseFromString(case["model"])
    ops = list(dict.fromkeys(n.op_type for n in model.graph.node))
    row: dict[str, Any] = {"case": case["name"], "ops": ops,
                           "opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                                        default=0)}
    skip = skip_reason(case, model)
    if skip:
        row["skipped"] = skip
        return row
    inits = {i.name for i in model.graph.initializer}
    names = [vi.name for vi in model.graph.input if vi.name not in inits]
    xs, ys = _data(case)
    data = dict(zip(names, xs))
    row["inputs"] = len(names)
    shapes = {n: tuple(x.shape) for n, x in data.items()}
    fixed = {n: x for n, x in data.items() if not _is_float(x)}
    live = [n for n in names if n not in fixed]
    attempts = [fixed] + ([{**fixed, **{n: data[n] for n in live[1:]}}] if len(live) > 1 else [])
    with tempfile.TemporaryDirectory() as work:
        t = time.perf_counter()
        res = None
        for k, frozen in enumerate(attempts):
            keep = [n for n in names if n not in frozen]
            src = os.path.join(work, f"{case['name']}_{k}.onnx")
            onnx.save(frozen_model(model, frozen), src)
            ref_in = {n: np.asarray(data[n], np.float32) for n in keep}
            calib_in = {n: calibration(x, seed=j) for j, (n, x) in enumerate(ref_in.items())}
            calib: Any = calib_in[keep[0]] if len(keep) == 1 else calib_in
            res, err = _convert(src, calib, os.path.join(work, f"ours{k}"), {n: shapes[n] for n in keep})
            if frozen:
                row["frozen"] = sorted(frozen)
            if res is not None:
                row.pop("error", None)
                break
            if k == 0 and len(attempts) > 1:
                row["live_error"] = err["error"]  # type: ignore[index]
            row.update(err or {})
        row["ok"] = res is not None
        row["convert_s"] = round(time.perf_counter() - t, 2)
        if res is None:
            return row
        for f in ("error_type", "error_lines"):
            row.pop(f, None)
        try:
            from converters.ir import ir_feed
            from converters.report import TFLiteRunner

            feed = ir_feed(res.graph, _in_graph_order(res.graph, ref_in))
            got = TFLiteRunner(res.tflite_path).run(list(feed.values()))
            row["db"] = [round(_sqnr(np.asarray(r, np.float32), g, nhwc=True), 2) for r, g in zip(ys, got)]
        except Exception as exc:  # noqa: BLE001
            row["db_error"] = _one_line(exc)[:200]
        row["micro"] = "crashed the process"
        emit(row)
        row["micro"] = micro_equal(res.tflite_path, res.graph, list(_in_graph_order(res.graph, ref_in)))
    return row


# ---------------------------------------------------------------- workers
def _worker(names: list[str]) -> int:
    """Measure ``names`` in this process, printing ``START name`` / ``PART row`` / ``ROW row`` lines."""
    import warnings

    warnings.simplefilter("ignore")
    cases = {c["name"]: c for c in load_cases()}
    out = sys.stdout
    sys.stdout = sys.stderr  # anything else printed (native or Python) stays out of the protocol stream
    for name in names:
        print(f"START {name}", file=out, flush=True)
        row = measure_case(cases[name], emit=lambda r: print("PART " + json.dumps(r), file=out, flush=True))
        print("ROW " + json.dumps(row), file=out, flush=True)
    return 0


def _run_chunk(names: list[str], timeout: float, done: Callable[[dict], None]) -> None:
    """Measure ``names`` in worker processes, restarting after a crash or a case that times out."""
    rest = list(names)
    while rest:
        p = subprocess.Popen([sys.executable, "-m", "benchmarks.onnx_node_tests", "--_worker", ",".join(rest)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        lines: queue.Queue[Optional[str]] = queue.Queue()
        err_tail: list[str] = []

        def pump_out(p: subprocess.Popen = p, lines: queue.Queue = lines) -> None:
            for ln in p.stdout:  # type: ignore[union-attr]
                lines.put(ln.rstrip("\n"))
            lines.put(None)

        def pump_err(p: subprocess.Popen = p, err_tail: list[str] = err_tail) -> None:
            for ln in p.stderr:  # type: ignore[union-attr]
                err_tail.append(ln.rstrip("\n"))
                del err_tail[:-5]

        threading.Thread(target=pump_out, daemon=True).start()
        threading.Thread(target=pump_err, daemon=True).start()
        current, part, started = None, None, time.monotonic()
        while True:
            budget = timeout + (60.0 if current is None else 0.0)  # the first case also loads the modules
            try:
                ln = lines.get(timeout=max(0.1, started + budget - time.monotonic()))
            except queue.Empty:
                p.kill()
                p.wait()
                if current is None:
                    current = rest[0]
                done({"case": current, "skipped": f"takes > {timeout:.0f} s (stopped)"})
                rest = rest[rest.index(current) + 1:]
                break
            if ln is None:  # the worker ended
                p.wait()
                if current is not None:  # ... in the middle of a case: a crash
                    row = part or {"case": current, "ok": False, "error_type": "crash"}
                    row["crash"] = f"process exited {p.returncode}: {' | '.join(err_tail[-3:])[:300]}"
                    done(row)
                    rest = rest[rest.index(current) + 1:]
                else:
                    rest = []
                break
            if ln.startswith("START "):
                current, part, started = ln[6:], None, time.monotonic()
            elif ln.startswith("PART "):
                part = json.loads(ln[5:])
            elif ln.startswith("ROW "):
                done(json.loads(ln[4:]))
                rest = rest[rest.index(current) + 1:]
                current = None
                started = time.monotonic()


def run_all(names: list[str], workers: int, chunk: int, timeout: float, total_note: str = "") -> list[dict]:
    """Every case in ``names`` measured by ``workers`` threads each driving worker processes over ``chunk``
    cases at a time; a progress line goes to stderr."""
    todo: queue.Queue[list[str]] = queue.Queue()
    for k in range(0, len(names), chunk):
        todo.put(names[k:k + chunk])
    rows: list[dict] = []
    lock = threading.Lock()
    t0 = time.monotonic()

    def done(row: dict) -> None:
        with lock:
            rows.append(row)
            c = Counter(state(r) for r in rows)
            print(f"\r  {len(rows)}/{len(names)} cases, {time.monotonic() - t0:.0f} s: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(c.items())) + "   ",
                  end="", file=sys.stderr, flush=True)

    def drive() -> None:
        while True:
            try:
                part = todo.get_nowait()
            except queue.Empty:
                return
            _run_chunk(part, timeout, done)

    threads = [threading.Thread(target=drive) for _ in range(max(1, workers))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    print(file=sys.stderr)
    order = {n: k for k, n in enumerate(names)}
    return sorted(rows, key=lambda r: order.get(r["case"], len(order)))


# ---------------------------------------------------------------- report
STATES = ("converted", "converted, inputs frozen", "refused", "several inputs", "skipped", "crashed")


def state(r: dict) -> str:
    """One of :data:`STATES`: ``converted, inputs frozen`` when float inputs after the first had to become
    constants; ``several inputs`` when the refusal is the converter's "N inputs are not supported"."""
    if "crash" in r:
        return "crashed"
    if "skipped" in r:
        return "skipped"
    if r.get("ok"):
        return "converted, inputs frozen" if r.get("live_error") else "converted"
    if r.get("inputs", 1) > 1 and SEVERAL_INPUTS.search(r.get("live_error", r.get("error", ""))):
        return "several inputs"
    return "refused"


def _clean(r: dict) -> bool:
    return r.get("error_type") in CLEAN_ERRORS and r.get("error_lines", 1) <= 1


_NODE = re.compile(r"(ONNX node|in node|input|output|tensor) '[^']*'")


def reason(r: dict) -> str:
    """A refusal's message with node and tensor names blanked, so equal reasons group."""
    msg = _NODE.sub(lambda m: m.group(1) + " '…'", r.get("error", ""))
    msg = re.sub(r"\b\d+(x\d+)+\b", "N", msg)
    return msg[:200]


def refusing_op(r: dict) -> str:
    """The op named by a refusal (``(Op)`` or ``op 'Op'``), else the case's ops."""
    m = re.search(r"ONNX node '[^']*' \((\w+)\)|unsupported ONNX op '(\w+)'", r.get("error", ""))
    if m:
        return m.group(1) or m.group(2)
    return "+".join(r.get("ops", [])[:3]) or "?"


def op_label(r: dict) -> str:
    """The op a case tests: its only op, or ``A+B+...`` for a function expanded into several."""
    ops = r.get("ops") or ["?"]
    return ops[0] if len(ops) == 1 else "+".join(ops[:3]) + ("+…" if len(ops) > 3 else "")


def summary(rows: list[dict]) -> dict[str, Any]:
    """Counts by state, refusals by (op, reason), skips by reason, crashes, micro mismatches."""
    s: dict[str, Any] = {"cases": len(rows), "states": dict(Counter(state(r) for r in rows))}
    s["refused"] = Counter((refusing_op(r), reason(r)) for r in rows if state(r) == "refused")
    s["skipped"] = Counter(r["skipped"] for r in rows if state(r) == "skipped")
    s["crashed"] = [(r["case"], r["crash"]) for r in rows if state(r) == "crashed"]
    s["unclean"] = [f"{r['case']} ({r.get('error', '')[:150]})" for r in rows
                    if state(r) in ("refused", "several inputs") and not _clean(r)]
    s["differs"] = [(r["case"], r.get("micro")) for r in rows if r.get("ok") and r.get("micro") != "equal"]
    return s


def _db(r: dict) -> Optional[float]:
    return min(r["db"]) if r.get("db") else None


def per_op(rows: list[dict]) -> list[list[str]]:
    """One line per op: cases, converted, refused, several inputs, skipped, crashed, micro == TFLM, median dB."""
    by: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by[op_label(r)].append(r)
    out = []
    for op in sorted(by):
        rs = by[op]
        c = Counter(state(r) for r in rs)
        conv = [r for r in rs if r.get("ok")]
        dbs = [d for d in (_db(r) for r in conv) if d is not None]
        eq = sum(r.get("micro") == "equal" for r in conv)
        out.append([op, str(len(rs)), str(c["converted"]), str(c["converted, inputs frozen"]), str(c["refused"]),
                    str(c["several inputs"]),
                    str(c["skipped"]), str(c["crashed"]), f"{eq}/{len(conv)}" if conv else "-",
                    f"{float(np.median(dbs)):.1f}" if dbs else "-"])
    return out


def _table(head: list[str], body: list[list[str]], markdown: bool) -> str:
    if markdown:
        esc = [[c.replace("|", "\\|") for c in row] for row in body]
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                         + ["| " + " | ".join(c) + " |" for c in esc])
    cells = [head] + body
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    return "\n".join("  ".join(c[i].ljust(widths[i]) for i in range(len(head))).rstrip() for c in cells)


def report(rows: list[dict], markdown: bool) -> str:
    """Counts, refusals by op and reason, skips by reason, crashes and the per-op table."""
    s = summary(rows)
    st = s["states"]
    parts = [f"{s['cases']} onnx node test cases: " + ", ".join(
        f"{k} {st.get(k, 0)}" for k in STATES)]
    conv = [r for r in rows if r.get("ok")]
    dbs = [d for d in (_db(r) for r in conv) if d is not None]
    parts.append(f"converted: micro == tflite-micro on {sum(r.get('micro') == 'equal' for r in conv)}/{len(conv)};"
                 f" SQNR vs the onnx reference output (LiteRT): median {np.median(dbs):.1f} dB, "
                 f"{sum(d < 20 for d in dbs)} below 20 dB" if dbs else "converted: none")
    parts.append("\nrefused, by op and reason:")
    parts.append(_table(["cases", "op", "reason"], [[str(n), op, why] for (op, why), n in s["refused"].most_common()],
                        markdown))
    parts.append("\nskipped, by reason:")
    parts.append(_table(["cases", "reason"], [[str(n), why] for why, n in s["skipped"].most_common()], markdown))
    if s["crashed"]:
        parts.append("\ncrashed:\n" + "\n".join(f"  {c}: {why}" for c, why in s["crashed"]))
    if s["unclean"]:
        parts.append("\nrefusals that are not one clean line: " + ", ".join(s["unclean"]))
    if s["differs"]:
        parts.append("\nmicro != tflite-micro (or fails): " + ", ".join(f"{c} ({m})" for c, m in s["differs"]))
    low = [f"{r['case']} ({_db(r):.1f})" for r in conv if _db(r) is not None and _db(r) < 20]
    if low:
        parts.append("\nconverted below 20 dB: " + ", ".join(low))
    parts.append("\nper op:")
    parts.append(_table(["op", "cases", "converted", "frozen", "refused", "several inputs", "skipped", "crashed",
                         "micro == TFLM", "median dB"], per_op(rows), markdown))
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    """Measure the cases and print the report (or the rows as JSON); exit 1 on a crash, a micro mismatch or
    a refusal that is not one clean line."""
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.onnx_node_tests", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m benchmarks.onnx_node_tests --markdown\n"
               "  python -m benchmarks.onnx_node_tests --ops Relu,Conv,Gemm\n"
               "  python -m benchmarks.onnx_node_tests --cases test_relu,test_conv_with_strides_padding\n"
               "  python -m benchmarks.onnx_node_tests --json > onnx_node_tests.json\n"
               "  python -m benchmarks.onnx_node_tests --rows onnx_node_tests.json --markdown")
    ap.add_argument("--ops", default="", help="comma-separated ONNX op types: cases whose model uses one of them")
    ap.add_argument("--cases", default="", help="comma-separated case names (test_...)")
    ap.add_argument("--timeout", type=float, default=TIMEOUT, help=f"seconds per case (default {TIMEOUT:.0f})")
    ap.add_argument("--workers", type=int, default=WORKERS, help=f"worker processes (default {WORKERS})")
    ap.add_argument("--chunk", type=int, default=CHUNK, help=f"cases per worker process (default {CHUNK})")
    ap.add_argument("--markdown", action="store_true", help="print Markdown tables")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    ap.add_argument("--rows", default="", help="print the report of a --json output instead of measuring")
    ap.add_argument("--_worker", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._worker:
        return _worker(args._worker.split(","))
    if args.timeout <= 0 or args.workers < 1 or args.chunk < 1:
        ap.error("--timeout, --workers and --chunk must be positive")
    if args.rows:
        try:
            rows = json.loads(Path(args.rows).read_text())
        except (OSError, ValueError) as exc:
            ap.error(f"--rows {args.rows}: cannot read it ({type(exc).__name__}: {exc})")
        print(report(rows, args.markdown))
        return 0
    cases = load_cases()
    ops = {s for s in args.ops.split(",") if s}
    want = {s for s in args.cases.split(",") if s}
    unknown = want - {c["name"] for c in cases}
    if unknown:
        ap.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    names = [c["name"] for c in cases
             if (not want or c["name"] in want) and (not ops or ops & set(case_ops(c["model"])))]
    if not names:
        ap.error(f"no case uses {args.ops}" if ops else "no cases")
    rows = run_all(names, args.workers, args.chunk, args.timeout)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(report(rows, args.markdown))
    s = summary(rows)
    return 1 if (s["crashed"] or s["unclean"] or s["differs"]) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
