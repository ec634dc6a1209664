"""``edge-convert`` tells numpy's OpenBLAS threads to sleep when idle instead of spinning (issue #18).

:func:`converters.cli.console_main` sets ``OPENBLAS_THREAD_TIMEOUT`` before numpy is loaded (unless the
environment sets it), which takes a spinning thread off the cores the conversion uses. Checked here:
the variable is set, a user's value wins, nothing changes when numpy is already loaded, a conversion
through the console entry point writes the same bytes as the library function with OpenBLAS's default,
and an error still gives one line and exit status 1.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "converters" / "data" / "digits_cnn.onnx"
DIGITS_CALIB = ROOT / "converters" / "data" / "digits_calib.npz"

#: Runs console_main with ``sys.argv[1:]`` as the command line; an atexit handler (run by the fast exit too)
#: prints what OpenBLAS saw when numpy was loaded.
PROGRAM = """
    import atexit, os, sys
    {pre}
    def seen():
        sys.stdout.write("\\nOPENBLAS_THREAD_TIMEOUT=%s\\n" % os.environ.get("OPENBLAS_THREAD_TIMEOUT"))
    atexit.register(seen)
    sys.argv = ["edge-convert"] + sys.argv[1:]
    from converters.cli import console_main
    console_main()
"""


def _run(tmp_path: Path, args: list[str], pre: str = "", **env: str) -> subprocess.CompletedProcess:
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(PROGRAM.format(pre=pre)))
    full = {k: v for k, v in os.environ.items() if k not in ("EDGE_RUNTIME_DEBUG", "OPENBLAS_THREAD_TIMEOUT")}
    full.update(PYTHONPATH=str(ROOT), **env)
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=full,
                          timeout=120, cwd=str(tmp_path))


def _seen(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("OPENBLAS_THREAD_TIMEOUT=")]
    assert len(lines) == 1, proc.stdout[-500:] + proc.stderr[-500:]
    return lines[0].split("=", 1)[1]


def _digests(out: Path) -> dict[str, str]:
    """md5 of every file in ``out``; report.json without its timings and with ``out`` as OUT."""
    res = {}
    for f in sorted(out.iterdir()):
        data = f.read_bytes()
        if f.name == "report.json":
            rep = json.loads(data)
            rep.pop("timings")
            data = json.dumps(rep, sort_keys=True).replace(str(out), "OUT").encode()
        elif f.name == "report.md":
            data = data.replace(str(out).encode(), b"OUT")
        res[f.name] = hashlib.md5(data).hexdigest()
    return res


def test_console_main_lets_openblas_threads_sleep_and_converts_the_same_bytes(tmp_path):
    from converters.pipeline import convert_model

    proc = _run(tmp_path, ["convert", str(DIGITS), "--profile", "rpi4-4gb", "--calib", str(DIGITS_CALIB),
                           "-o", str(tmp_path / "cli")])
    assert proc.returncode == 0, proc.stderr
    assert _seen(proc) == "4"
    # the library function, in this process (numpy loaded with OpenBLAS's default timeout): the same bytes
    convert_model(DIGITS, "rpi4-4gb", DIGITS_CALIB, tmp_path / "lib")
    cli, lib = _digests(tmp_path / "cli"), _digests(tmp_path / "lib")
    assert set(cli) == {"digits_cnn_int8.tflite", "digits_cnn_int8.onnx", "report.json", "report.md"}
    assert cli == lib


def test_a_value_from_the_environment_is_kept(tmp_path):
    proc = _run(tmp_path, ["profiles"], OPENBLAS_THREAD_TIMEOUT="12")
    assert proc.returncode == 0, proc.stderr
    assert _seen(proc) == "12"


def test_nothing_is_set_once_numpy_is_loaded(tmp_path):
    """numpy already imported: OpenBLAS has read its settings, so the environment (inherited by any child
    process) is left as it is."""
    proc = _run(tmp_path, ["profiles"], pre="import numpy")
    assert proc.returncode == 0, proc.stderr
    assert _seen(proc) == "None"


def test_a_bad_input_still_gives_one_error_line_and_status_1(tmp_path):
    proc = _run(tmp_path, ["convert", str(DIGITS), "--profile", "rpi4-4gb", "--calib",
                           str(tmp_path / "missing.npy"), "-o", str(tmp_path / "out")])
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edge-convert: error: ") and "missing.npy" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert _seen(proc) == "4"
