"""[SPEED] start-up: what ``edge-runtime run`` imports, and that what it no longer imports still works when needed.

The run path of a model without a profile imports no pydantic, YAML, matplotlib, onnx or
onnxruntime, nor what was cut from it for start-up time and RSS: importlib.metadata (the
version, now looked up only for ``--version``), hashlib/OpenSSL (the first-run guard's cache
key), subprocess (the guard's spawned child), the accelerators module (no profile, nothing to
try), pkgutil (the command is imported by name), zipfile (a .npy input) and tempfile (native stderr is
captured in a memfd), logging (configured only when a message is emitted: edge_runtime.log) and
argparse with gettext/locale (a plain command line is parsed by cli_support.parse_light). Each
check runs the real command in a fresh interpreter; what replaced argparse is checked against
argparse itself on generated command lines, and the logger stand-in against ``logging``.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import logging
import pkgutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_runtime import cli_support
from edge_runtime import log as lazylog

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
                     "pkgutil", "zipfile", "tempfile", "logging", "argparse", "gettext", "locale")


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


# ---------------------------------------------------------------- argparse only when needed

def test_argparse_still_gives_help_errors_and_abbreviations(amf, tmp_path):
    """What the light parser does not take goes to argparse: its help, its error messages (exit 2),
    and the forms only it understands (an abbreviated option, ``--opt=value``)."""
    model, x = amf
    r, mods = _run(tmp_path, "run", str(model), "--input", str(x), "--threads", "x")
    assert r.returncode == 2 and "argparse" in mods
    said = [ln for ln in r.stderr.splitlines() if ln and not ln.startswith("MODULES ")]
    assert said[-1] == "edge-runtime run: error: argument --threads: invalid int value: 'x'"
    r, _ = _run(tmp_path, "run", str(model), "--input", str(x), "--backend", "tpu")
    assert r.returncode == 2 and "argument --backend/-b: invalid choice: 'tpu'" in r.stderr
    r, _ = _run(tmp_path, "run", str(model))
    assert r.returncode == 2 and "the following arguments are required: --input/-i" in r.stderr
    r, _ = _run(tmp_path, "run", str(model), "--input", str(x), "-v")
    assert r.returncode == 2 and "error: unrecognized arguments: -v" in r.stderr
    r, mods = _run(tmp_path, "run", "--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: edge-runtime run [-h] --input X.npy|X.npz")
    for argv in (["run", str(model), "--inp", str(x)], ["run", str(model), f"--input={x}", "--json"]):
        r, mods = _run(tmp_path, *argv)
        assert r.returncode == 0, r.stderr
        assert "argparse" in mods and ("shape (1, 4) float32" in r.stdout or '"shape": [1, 4]' in r.stdout)
    r, mods = _run(tmp_path)
    assert r.returncode == 2 and "usage: edge-runtime [-h] [-v] [--version] COMMAND" in r.stdout


def _command_modules() -> list:
    mods = []
    for package in ("edge_runtime.commands", "converters.commands"):
        pkg = importlib.import_module(package)
        for info in pkgutil.iter_modules(pkg.__path__):
            mod = importlib.import_module(f"{package}.{info.name}")
            if hasattr(mod, "NAME") and hasattr(mod, "add_arguments"):
                mods.append(mod)
    return mods


def _argparse_result(mod, argv: list[str]) -> object:
    """``vars`` of what run_cli's argparse parser makes of ``argv``, or ``"exit"`` when it stops."""
    parser = cli_support._build_parser("edge-runtime", "d", [mod])
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            return vars(parser.parse_args(argv))
    except SystemExit:
        return "exit"


def _pieces(mod) -> dict[str, list[tuple[str, ...]]]:
    """Pieces a command line for ``mod`` is made of: ``good`` (each option with values of its type or
    its choices, flags), ``positional`` values, what ``required`` options need, and ``junk`` that only
    argparse takes or refuses (a value of the wrong type or starting with ``-``, an option without its
    value, abbreviations, ``--opt=value``, ``--``, ``-h``, unknown options)."""
    parser = cli_support._build_parser("edge-runtime", "d", [mod])
    sub = next(a for a in parser._actions if a.dest == "command").choices[mod.NAME]
    out: dict[str, list[tuple[str, ...]]] = {
        "good": [], "required": [], "positional": [("model.tflite",), ("x.npy",), ("",), ("a b",)],
        "junk": [("--nope",), ("-h",), ("--",), ("-",), ("-v",), ("-1",), ("--version",)]}
    for action in sub._actions:
        if action.dest == "help":
            continue
        if not action.option_strings:
            out["positional"] += [(str(c),) for c in (action.choices or [])]
            continue
        typed = {int: ["3", "0"], float: ["1.5", "2"]}.get(action.type, ["x.npy", "3", "", "a b"])
        values = [str(c) for c in action.choices] if action.choices else typed
        for opt in action.option_strings:
            if action.nargs == 0:
                out["good"].append((opt,))
            else:
                out["good"] += [(opt, v) for v in values]
                out["required" if action.required else "good"] += [(opt, v) for v in values]
                out["junk"] += [(opt,), (opt + "=3",), (opt, "-1"), (opt, "nonsense")]
            if opt.startswith("--"):
                out["junk"].append((opt[:-1],) if action.nargs == 0 else (opt[:-1], "3"))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_light_parse_is_argparse_or_steps_aside(data):
    """On generated command lines, :func:`cli_support.parse_light` gives exactly argparse's namespace,
    or None (argparse then parses): never a different answer, for every command either CLI has. (About
    one line in ten takes the light path, for ``run`` too; test_light_parse_takes_plain_command_lines
    checks that plain ones always do.)"""
    for mod in _command_modules():
        pieces = _pieces(mod)
        head = data.draw(st.lists(st.sampled_from(["-v", "--verbose"]), max_size=2))
        body = data.draw(st.lists(st.sampled_from(pieces["good"]), max_size=5)) if pieces["good"] else []
        for kind, most in (("required", 2), ("positional", 2), ("junk", 1)):
            if pieces[kind] and data.draw(st.booleans()):
                body += data.draw(st.lists(st.sampled_from(pieces[kind]), min_size=1, max_size=most))
        body = data.draw(st.permutations(body))
        argv = head + [mod.NAME] + [token for piece in body for token in piece]
        light = cli_support.parse_light(argv, mod)
        if light is not None:
            assert vars(light) == _argparse_result(mod, argv), argv


def test_light_parse_takes_plain_command_lines():
    """The light path is really taken for ordinary ``run`` command lines (and equals argparse's)."""
    from edge_runtime.commands import run as run_cmd

    for argv in (["run", "m.tflite", "--input", "x.npy"],
                 ["-v", "run", "--input", "x.npy", "m.tflite", "--threads", "2", "-b", "micro", "--json"],
                 ["run", "m.tflite", "-i", "x.npy", "-o", "y.npz", "--dequantize", "--quantize", "--reset-each",
                  "--op-resolver", "reference", "--accelerator", "none", "--profile", "p.yaml"]):
        light = cli_support.parse_light(argv, run_cmd)
        assert light is not None, argv
        assert vars(light) == _argparse_result(run_cmd, argv)
        assert light == cli_support.Namespace(**vars(light)) and "command" in light


# ---------------------------------------------------------------- logging only when a message is emitted

#: Logs through a logger from ``MAKE``; prints whether logging was imported by then after the debug
#: message and after the info message.
LOG_SCRIPT = r"""
import sys
{make}
log.debug("debug %s", 1)
print("imported after debug:", "logging" in sys.modules)
log.info("info %s", 2)
print("imported after info:", "logging" in sys.modules)
log.warning("warning %s", 3)
log.error("error %s", 4)
"""


def _log_run(make: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-c", LOG_SCRIPT.format(make=make)], check=False, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return r


def test_logger_stand_in_behaves_as_logging_when_nothing_is_configured():
    """A library user who never configured logging sees the same lines from edge_runtime.log as from
    ``logging`` (WARNING and up, bare message), and debug/info import nothing."""
    ours = _log_run("from edge_runtime.log import getLogger\nlog = getLogger('edge_runtime')")
    plain = _log_run("import logging\nlog = logging.getLogger('edge_runtime')")
    assert ours.stderr == plain.stderr == "warning 3\nerror 4\n"
    assert ours.stdout == "imported after debug: False\nimported after info: False\n"


@pytest.mark.parametrize("verbose", [False, True])
def test_lazy_configuration_applies_at_the_first_message(verbose):
    make = (f"from edge_runtime import log as lazylog\nlazylog.configure('prog', {verbose}, lazy=True)\n"
            "assert 'logging' not in sys.modules\nlog = lazylog.getLogger('edge_runtime.x')")
    r = _log_run(make)
    expected = ["prog: debug 1"] if verbose else []
    assert r.stderr.splitlines() == expected + ["prog: info 2", "prog: warning 3", "prog: error 4"]
    assert r.stdout == f"imported after debug: {verbose}\nimported after info: True\n"


def test_configure_if_imported_formats_a_library_s_own_records():
    code = ("import sys\nfrom edge_runtime import log as lazylog\nlazylog.configure('prog', False, lazy=True)\n"
            "import logging\nlazylog.configure_if_imported()\nlogging.getLogger('somelib').warning('careful')\n")
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "prog: careful\n", r.stderr


def test_records_name_the_caller_not_the_stand_in(caplog):
    """With logging in use, a record made through the stand-in carries the caller's file and line."""
    log = lazylog.getLogger("edge_runtime.test")
    with caplog.at_level(logging.DEBUG, logger="edge_runtime.test"):
        log.debug("from %s", "here")
        log.warning("again")
    assert [r.getMessage() for r in caplog.records] == ["from here", "again"]
    assert {Path(r.pathname).name for r in caplog.records} == {"test_startup_imports.py"}
    assert {r.funcName for r in caplog.records} == {"test_records_name_the_caller_not_the_stand_in"}
    assert log.isEnabledFor(logging.DEBUG) == logging.getLogger("edge_runtime.test").isEnabledFor(logging.DEBUG)
