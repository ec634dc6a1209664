"""[SPEED] start-up: what ``edge-runtime run`` imports, and that what it no longer imports still works when needed.

The run path of a model without a profile imports no pydantic, YAML, matplotlib, onnx or
onnxruntime, nor what was cut from it for start-up time and RSS: importlib.metadata (the
version, now looked up only for ``--version``), hashlib/OpenSSL (the first-run guard's cache
key), subprocess (the guard's spawned child), the accelerators module (no profile, nothing to
try), pkgutil (the command is imported by name), zipfile (a .npy input) and tempfile (native stderr is
captured in a memfd). Each check runs the
real command in a fresh interpreter.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from delegate.tflite_builder import add_mul_fc_model  # noqa: E402

#: Runs ``edge-runtime ARGS`` in this process, then lists every imported module on stderr.
HARNESS = r"""
import sys
from edge_runtime.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:  # --version, --help
    code = exc.code
sys.stdout.flush()
sys.stderr.write("\nMODULES " + " ".join(sorted(sys.modules)) + "\n")
sys.exit(code)
"""

NEVER_ON_RUN_PATH = ("pydantic", "yaml", "matplotlib", "onnx", "onnxruntime", "device_profiles")
CUT_FROM_RUN_PATH = ("importlib.metadata", "hashlib", "_hashlib", "subprocess", "edge_runtime.backends.accelerators",
                     "pkgutil", "zipfile", "tempfile")


def _run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    r = subprocess.run([sys.executable, "-c", HARNESS, *args], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("MODULES ")]
    assert lines, r.stderr
    return r, set(lines[-1].split()[1:])


@pytest.fixture(scope="module")
def kws(shared: Path) -> tuple[Path, Path]:
    """The MLPerf Tiny KWS int8 model and its reference input (.npy)."""
    d = shared / "models" / "mlperf_tiny"
    return d / "models" / "kws_ref_model.tflite", d / "data" / "kws01" / "kws_g_kws_inputs_int8_1x49x10x1.npy"


@pytest.fixture()
def amf(tmp_path: Path) -> tuple[Path, Path]:
    """A three-input float model (ADD, MUL, FULLY_CONNECTED) and an .npz of inputs; needs no shared data."""
    data, _ = add_mul_fc_model()
    model = tmp_path / "amf.tflite"
    model.write_bytes(data)
    x = tmp_path / "x.npz"
    ones = np.ones((1, 8), np.float32)
    np.savez(x, a=ones, b=ones, c=ones)
    return model, x


def test_run_on_kws_imports_none_of_the_cut_modules(kws, tmp_path):
    model, x = kws
    for _ in range(2):  # a never-seen model (the guard forks its test child), then a cache hit
        r, mods = _run(tmp_path, "run", str(model), "--input", str(x))
        assert r.returncode == 0, r.stderr
        assert "argmax 5" in r.stdout
        assert "ai_edge_litert.interpreter" in mods  # the harness does see the run's imports
        loaded = sorted(m for m in mods if m.split(".")[0] in NEVER_ON_RUN_PATH or m in CUT_FROM_RUN_PATH)
        assert loaded == []


def test_npz_input_needs_no_cut_module_but_zipfile(amf, tmp_path):
    model, x = amf
    r, mods = _run(tmp_path, "run", str(model), "--input", str(x))
    assert r.returncode == 0, r.stderr
    assert "shape (1, 4) float32" in r.stdout
    loaded = sorted(m for m in mods if m.split(".")[0] in NEVER_ON_RUN_PATH or m in CUT_FROM_RUN_PATH)
    assert loaded == ["zipfile"]  # numpy reads an .npz with it


def test_accelerator_fallback_still_warns_once(amf, tmp_path):
    """Naming an accelerator loads the accelerators module, which the plain run path skips: its
    fallback warning still comes out as one ``edge-runtime:`` line."""
    model, x = amf
    r, mods = _run(tmp_path, "run", str(model), "--input", str(x), "--accelerator", str(tmp_path / "libnone.so"))
    assert r.returncode == 0, r.stderr
    assert "edge_runtime.backends.accelerators" in mods
    warned = [ln for ln in r.stderr.splitlines() if "accelerator unavailable" in ln]
    assert len(warned) == 1 and warned[0].startswith("edge-runtime: accelerator unavailable, running on the CPU: ")


def test_verbose_still_says_why_it_runs_on_the_cpu(amf, tmp_path):
    model, x = amf
    r, _ = _run(tmp_path, "-v", "run", str(model), "--input", str(x))
    assert r.returncode == 0, r.stderr
    assert ("edge-runtime: running on the CPU: no accelerator configured for the litert backend "
            "(no device profile given)") in r.stderr.splitlines()


def test_cpu_selection_without_the_accelerators_module_matches_it(amf):
    """litert's shortcut (no profile, nothing to try) records what accelerators.select records."""
    import edge_runtime
    from edge_runtime.backends import accelerators as acc

    model, _ = amf
    for accelerator in ("auto", "none"):
        with edge_runtime.load(model, backend="litert", accelerator=accelerator) as m:
            got = {k: m.info[k] for k in ("accelerator", "fallback_reason")}
        sel = acc.select(acc.candidates(None, acc.TFLITE_DELEGATE, accelerator), lambda s: None, require=False,
                         backend="litert", profile_name=None)
        assert got == sel.info()


def test_version_is_looked_up_only_when_asked(tmp_path):
    r, mods = _run(tmp_path, "--version")
    assert r.stdout.startswith("edge-runtime ") and r.returncode == 0
    assert "importlib.metadata" in mods
