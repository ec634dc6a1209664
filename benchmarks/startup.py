"""Start-up cost of ``edge-runtime run`` on the KWS model against a bare LiteRT script doing the same.

Measured from outside: each variant is a fresh process, timed from spawn to exit, with
the child's CPU time (user + system) and peak RSS (``ru_maxrss``), both from ``wait4``.
The variants run in alternating order, one round after another, and the table gives
medians over ``--pairs`` rounds (at least 15) with the ratios of the medians, all from
this one run. CPU time is shown because wall time on a busy machine mostly measures the
wait for a core; the target is on wall time. This process stays small (it never imports
numpy), because a child's ``ru_maxrss`` cannot read below its parent's RSS at the spawn.

Variants (same interpreter, same model, same input .npy):

- ``edge-runtime run MODEL --input X.npy``: the installed console script, with the
  LiteRT first-run guard's cache already holding this model (the steady state);
- ``bare LiteRT script``: a script that imports numpy and LiteRT's ``Interpreter``,
  loads the model, reads the input, invokes and prints the output, nothing else;
- ``edge-runtime run, never-seen model``: the same command with an empty guard cache,
  so the first-run guard forks its test child (the cost a new model pays once);
- ``python -c pass``: the interpreter's own start-up, for scale.

``edge-runtime`` is measured from an installed wheel, as a user has it, not from the
editable install (setuptools' editable finder adds ~14 ms to every start). The wheel is
built from this checkout (``pip wheel --no-deps --no-build-isolation``) and installed
into a throw-away venv that shares this interpreter's site-packages through a ``.pth``
line, so the dependencies are the same but ``edge_runtime`` comes from the wheel. The
venv is cached under ``$EDGE_RUNTIME_BENCH_CACHE`` (else ``~/.cache/edge-runtime/bench``),
keyed by a hash of the packaged sources; when it cannot be built, the benchmark says
why and measures the current installation instead.

Examples:
    python -m benchmarks.startup                 # 21 rounds
    python -m benchmarks.startup --pairs 15 --json
    python -m benchmarks.startup --editable      # measure the current (editable) install
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import shutil
import site
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
#: What the wheel packages (pyproject's packages.find) plus the files its build reads.
PACKAGED = ("edge_runtime", "converters", "device_profiles", "firmware_sim", "pyproject.toml", "README.md")
MIN_PAIRS = 15

BARE_SCRIPT = '''\
import sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
it = Interpreter(model_path=sys.argv[1])
it.allocate_tensors()
inp = it.get_input_details()[0]
out = it.get_output_details()[0]
it.set_tensor(inp["index"], np.load(sys.argv[2]))
it.invoke()
y = it.get_tensor(out["index"])
print(y, "argmax", int(y.argmax()))
'''


@dataclass
class Environment:
    """The interpreter and ``edge-runtime`` command to measure, and how they were obtained."""

    python: Path
    edge_runtime: list[str]
    note: str
    work: Path
    temporary: bool = False  #: ``work`` is a temporary directory, removed at the end


@dataclass
class Variant:
    """One command measured in every round."""

    name: str
    cmd: list[str]
    fresh_guard_cache: bool = False
    walls: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)


def _cache_base() -> Path:
    env = os.environ.get("EDGE_RUNTIME_BENCH_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "edge-runtime" / "bench"


def _source_files() -> list[Path]:
    files: list[Path] = []
    for name in PACKAGED:
        p = ROOT / name
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            files += [f for f in p.rglob("*") if f.is_file() and "__pycache__" not in f.parts
                      and not f.name.endswith((".pyc", ".pyo"))]
    return sorted(files)


def _sources_key() -> str:
    h = hashlib.sha256(f"{sys.version}|{sys.prefix}".encode())
    for f in _source_files():
        h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _run_quiet(cmd: list[str], cwd: Optional[Path] = None) -> None:
    r = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        tail = " | ".join(r.stdout.strip().splitlines()[-3:])
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({r.returncode}): {tail}")


def _build_wheel_env(target: Path) -> None:
    """Build the project's wheel and install it into a venv at ``target/venv`` sharing our site-packages."""
    src = target / "src"
    for name in PACKAGED:
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info"))
        elif p.is_file():
            src.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, src / name)
    _run_quiet([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                "-w", str(target / "wheel"), "-q"])
    wheels = sorted((target / "wheel").glob("edge_runtime-*.whl"))
    if not wheels:
        raise RuntimeError("pip wheel made no edge_runtime wheel")
    _run_quiet([sys.executable, "-m", "venv", "--without-pip", str(target / "venv")])
    venv_python = target / "venv" / "bin" / "python"
    purelib = subprocess.run([str(venv_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    shared = [p for p in site.getsitepackages() + [site.getusersitepackages()] if os.path.isdir(p)]
    Path(purelib, "_edge_runtime_bench_shared.pth").write_text("".join(f"{p}\n" for p in shared))
    _run_quiet([sys.executable, "-m", "pip", "--python", str(venv_python), "install", "--no-deps", "--no-index",
                "-q", str(wheels[-1])])
    where = subprocess.run([str(venv_python), "-c", "import edge_runtime; print(edge_runtime.__file__)"],
                           capture_output=True, text=True, cwd=target).stdout.strip()
    if not where.startswith(str(target)):
        raise RuntimeError(f"the venv imports edge_runtime from {where or 'nowhere'}, not from the wheel")
    shutil.rmtree(src, ignore_errors=True)


def wheel_environment(rebuild: bool = False) -> tuple[Optional[Path], str]:
    """The cached wheel venv for the current sources (built when missing), or ``None`` and why not."""
    base = _cache_base()
    try:
        key = _sources_key()
        target = base / f"startup-wheel-{key}"
        if rebuild and target.exists():
            shutil.rmtree(target)
        if not (target / "ready").exists():
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            _build_wheel_env(target)
            (target / "ready").touch()
            for old in base.glob("startup-wheel-*"):
                if old != target:
                    shutil.rmtree(old, ignore_errors=True)
            note = f"installed wheel, built now into {target}"
        else:
            note = f"installed wheel, cached in {target}"
        return target, note
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        return None, f"could not build an installed wheel ({exc}); measuring the current installation instead"


def environment(editable: bool, rebuild: bool) -> Environment:
    """Where to run ``edge-runtime``: the wheel venv, or (fallback / ``--editable``) this interpreter."""
    target, note = (None, "current installation (--editable)") if editable else wheel_environment(rebuild)
    if target is not None:
        bin_dir = target / "venv" / "bin"
        return Environment(bin_dir / "python", [str(bin_dir / "edge-runtime")], note, target)
    exe = Path(sys.executable)
    cli = exe.parent / "edge-runtime"
    cmd = [str(cli)] if cli.exists() else [str(exe), "-m", "edge_runtime.cli"]
    work = _cache_base() / "startup-current"
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError:
        return Environment(exe, cmd, note, Path(tempfile.mkdtemp(prefix="edge-runtime-startup-")), temporary=True)
    return Environment(exe, cmd, note, work)


def measure(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, float, str]:
    """Wall time from spawn to exit (s), the child's CPU time (user + system, s), its peak RSS (MiB)
    and its stdout."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env, cwd=cwd)
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, ru = os.wait4(proc.pid, 0)  # reaped here, so that its own rusage is ours to read
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stdout.close()
        if proc.returncode != 0:
            err.seek(0)
            why = err.read().decode(errors="replace").strip()
            raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}: {why}")
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0, out.decode()


def kws_files() -> tuple[Path, Path]:
    """The KWS model and input, located by :mod:`edge_runtime.reference_data` in a child process.

    Not imported here: that module imports numpy, and a child's peak RSS as ``wait4`` reports it is
    never below its parent's RSS at the time of the spawn (the child starts as a copy), so this
    process stays small.
    """
    code = ("from edge_runtime.reference_data import mlperf_data as d, mlperf_model as m\n"
            "try:\n print(m('kws_ref_model.tflite')); print(d('kws01', 'kws_g_kws_inputs_int8_1x49x10x1.npy'))\n"
            "except FileNotFoundError as e:\n print('missing', e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    lines = r.stdout.strip().splitlines()
    if not lines or lines[0].startswith("missing"):
        raise FileNotFoundError(lines[0][len("missing "):] if lines else "shared data not found")
    return Path(lines[0]), Path(lines[1])


def _argmax(text: str) -> Optional[int]:
    m = re.search(r"argmax (\d+)", text)
    return int(m.group(1)) if m else None


def main(argv: list[str]) -> int:
    """Run the variants in alternating rounds and print the table."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.startup", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", "--repeats", type=int, default=21, metavar="N",
                    help=f"rounds (each runs every variant once; default 21, at least {MIN_PAIRS})")
    ap.add_argument("--editable", action="store_true", help="measure the current installation, not a wheel")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the cached wheel venv")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = ap.parse_args(argv)
    if args.pairs < MIN_PAIRS:
        ap.error(f"--pairs must be at least {MIN_PAIRS} (medians of fewer paired runs are not trusted here)")
    try:
        model, x = kws_files()
    except FileNotFoundError as exc:
        print(f"skipped: {exc}")
        return 0
    envir = environment(args.editable, args.rebuild)
    try:
        return _measure_and_report(args, model, x, envir)
    finally:
        if envir.temporary:
            shutil.rmtree(envir.work, ignore_errors=True)


def _measure_and_report(args: argparse.Namespace, model: Path, x: Path, envir: Environment) -> int:
    """Run the rounds in ``envir`` and print the table (or JSON)."""
    bare = envir.work / "bare_litert.py"
    bare.write_text(BARE_SCRIPT)
    guard_cache = envir.work / "guard-cache"
    py = str(envir.python)
    edge_cmd = envir.edge_runtime + ["run", str(model), "--input", str(x)]
    variants = [
        Variant("edge-runtime run", edge_cmd),
        Variant("bare LiteRT script", [py, str(bare), str(model), str(x)]),
        Variant("edge-runtime run, never-seen model", edge_cmd, fresh_guard_cache=True),
        Variant("python -c pass", [py, "-c", "pass"]),
    ]
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_RUNTIME_", "PYTHON"))}
    base_env["EDGE_RUNTIME_CACHE_DIR"] = str(guard_cache)
    answers: dict[str, Optional[int]] = {}
    with tempfile.TemporaryDirectory(prefix="startup-guard-") as fresh_root:
        def run(v: Variant, i: int) -> tuple[float, float, float, str]:
            env = dict(base_env)
            if v.fresh_guard_cache:
                env["EDGE_RUNTIME_CACHE_DIR"] = os.path.join(fresh_root, f"{v.name[:4]}-{i}")
            return measure(v.cmd, env, envir.work)

        for v in variants:  # untimed: warms the page cache, the .pyc files and the guard's cache
            answers[v.name] = _argmax(run(v, -1)[3])
        for i in range(args.pairs):
            for v in (variants if i % 2 == 0 else variants[::-1]):
                w, c, r, _ = run(v, i)
                v.walls.append(w)
                v.cpu.append(c)
                v.rss.append(r)
    if answers["edge-runtime run"] is None or answers["edge-runtime run"] != answers["bare LiteRT script"]:
        print(f"error: the two variants disagree on the output: {answers}", file=sys.stderr)
        return 1
    med = {v.name: (statistics.median(v.walls) * 1e3, statistics.median(v.rss), statistics.median(v.cpu) * 1e3)
           for v in variants}
    ref = med["bare LiteRT script"]
    doc = {
        "model": model.name, "input": x.name, "rounds": args.pairs, "python": sys.version.split()[0],
        "install": envir.note, "cpus": os.cpu_count(), "load_average": os.getloadavg()[0],
        "rss_floor_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "variants": {v.name: {"median_ms": med[v.name][0], "min_ms": min(v.walls) * 1e3,
                              "peak_rss_mib": med[v.name][1], "cpu_ms": med[v.name][2],
                              "time_ratio": med[v.name][0] / ref[0], "rss_ratio": med[v.name][1] / ref[1],
                              "cpu_ratio": med[v.name][2] / ref[2]} for v in variants},
    }
    if args.json:
        print(json.dumps(doc))
        return 0
    print(f"KWS model {model.name}, input {x.name}; {args.pairs} alternating rounds; python {doc['python']}; "
          f"{doc['cpus']} CPU(s), load average {doc['load_average']:.2f}")
    print(f"edge-runtime from: {envir.note}")
    print(f"{'variant':<36} {'spawn to exit (ms)':>18} {'min (ms)':>9} {'CPU (ms)':>9} {'peak RSS (MiB)':>15} "
          f"{'time / bare':>12} {'CPU / bare':>11} {'RSS / bare':>11}")
    for v in variants:
        d = doc["variants"][v.name]
        print(f"{v.name:<36} {d['median_ms']:>18.1f} {d['min_ms']:>9.1f} {d['cpu_ms']:>9.1f} {d['peak_rss_mib']:>15.1f} "
              f"{d['time_ratio']:>12.2f} {d['cpu_ratio']:>11.2f} {d['rss_ratio']:>11.2f}")
    print("medians over the rounds; spawn to exit = wall time from process spawn to exit after printing the result; "
          "CPU = the child's user + system time (less sensitive to a busy machine than wall time)")
    print("target for edge-runtime run: time <= 1.10x, peak RSS <= 1.05x the bare script")
    print(f"peak RSS is ru_maxrss from wait4; it cannot read below this benchmark's own {doc['rss_floor_mib']:.1f} MiB "
          "(a child starts as a copy of its parent)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
