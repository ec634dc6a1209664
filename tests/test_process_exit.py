"""edge_runtime.process_exit: the console scripts leave without interpreter teardown, losing nothing."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(code))
    full_env = {k: v for k, v in os.environ.items() if k != "EDGE_RUNTIME_DEBUG"}
    full_env.update(PYTHONPATH=str(ROOT), **env)
    return subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True,
                          env=full_env, timeout=60)


PROGRAM = """
    import atexit, logging, sys
    from pathlib import Path
    from edge_runtime.process_exit import exit_process

    out = Path(sys.argv[1])
    atexit.register(lambda: (out / "atexit.txt").write_text("ran"))
    logging.basicConfig(filename=str(out / "log.txt"), level=logging.INFO)
    logging.getLogger("t").info("logged line")
    sys.stdout.write("x" * 100000)  # more than a pipe buffer, no newline
    sys.stderr.write("last words")
    exit_process(3)
"""


@pytest.mark.parametrize("debug", [False, True])
def test_exit_code_streams_atexit_and_logging_survive(tmp_path, debug):
    env = {"EDGE_RUNTIME_DEBUG": "1"} if debug else {}
    proc = _run(PROGRAM, tmp_path, **env)
    assert proc.returncode == 3
    assert proc.stdout == "x" * 100000 and proc.stderr == "last words"
    assert (tmp_path / "atexit.txt").read_text() == "ran"
    assert "logged line" in (tmp_path / "log.txt").read_text()


def test_a_live_thread_gets_the_normal_exit(tmp_path):
    proc = _run("""
        import sys, threading, time
        from pathlib import Path
        from edge_runtime.process_exit import exit_process

        def late():
            time.sleep(0.3)
            (Path(sys.argv[1]) / "thread.txt").write_text("finished")

        threading.Thread(target=late).start()
        exit_process(0)
    """, tmp_path)
    assert proc.returncode == 0
    assert (tmp_path / "thread.txt").read_text() == "finished"  # joined, not cut short


def test_console_scripts_use_the_fast_exit_and_keep_their_exit_codes(tmp_path):
    text = (ROOT / "pyproject.toml").read_text()
    assert 'edge-convert = "converters.cli:console_main"' in text
    assert 'edge-runtime = "edge_runtime.cli:console_main"' in text
    missing = subprocess.run([sys.executable, "-m", "converters.cli", "convert", str(tmp_path / "none.onnx"),
                              "--profile", "rpi4-4gb", "--calib", "x", "-o", str(tmp_path / "o")],
                             capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert missing.returncode != 0 and missing.stderr.strip().splitlines()[-1].startswith("edge-convert: error:")
    listed = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "--version"], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert listed.returncode == 0 and listed.stdout.strip()


def test_a_profiler_still_gets_its_report(tmp_path):
    """Under ``python -m cProfile`` the normal exit is kept, so the profile is written."""
    script = tmp_path / "prog.py"
    script.write_text("from edge_runtime.process_exit import exit_process\nexit_process(0)\n")
    out = tmp_path / "prog.prof"
    env = {k: v for k, v in os.environ.items() if k != "EDGE_RUNTIME_DEBUG"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out), str(script)], env=env, timeout=60)
    assert proc.returncode == 0 and out.stat().st_size > 0
