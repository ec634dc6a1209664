"""[HARDEN] hostile configs and inputs: one clear line, quickly; never a traceback, a hang or a bomb."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.daemon.config import load_config
from edge_runtime.errors import ConfigError, InputError
from edge_runtime.model import TensorSpec
from edge_runtime.safe_yaml import MAX_DEPTH, parse_yaml_text

BOMB = """a: &a ["x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
"""


def _cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_runtime.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("where", ["model.labels", "model.path", "preprocess"])
def test_alias_bomb_in_a_serve_config_is_refused_at_once(tmp_path: Path, where: str) -> None:
    lines = BOMB.replace("h: &h", "h: &h").splitlines()
    section, key = (where.split(".") + [None])[:2]
    body = "\n".join("  " + ln for ln in lines)
    text = (f"model:\n  path: m.tflite\n  {key}:\n" + "\n".join("    " + ln for ln in lines)) if key \
        else f"model: {{path: m.tflite}}\n{section}:\n{body}\n"
    cfg = tmp_path / "device.yaml"
    cfg.write_text(text)
    t0 = time.perf_counter()
    r = _cli("serve", "--config", str(cfg))
    assert time.perf_counter() - t0 < 15
    assert r.returncode == 1 and "alias" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_fleet_files_may_use_aliases_within_a_budget() -> None:
    assert parse_yaml_text("a: &x [1, 2]\nb: *x\n", "f.yaml", allow_aliases=True) == {"a": [1, 2], "b": [1, 2]}
    with pytest.raises(ConfigError, match="expand this document past"):
        parse_yaml_text(BOMB, "fleet.yaml", allow_aliases=True)


def test_deeply_nested_yaml_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "deep.yaml"
    cfg.write_text("model: " + "[" * 3000 + "]" * 3000 + "\n")
    with pytest.raises(ConfigError, match=f"nesting deeper than {MAX_DEPTH}"):
        load_config(cfg)
    r = _cli("serve", "--config", str(cfg))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


@pytest.mark.parametrize("data, problem", [(b"model: {path: \xff\xfe\xfa}\n", "not a text file"),
                                           ("model: x\n".encode("utf-16"), "UTF-16")])
def test_non_utf8_configs_are_one_line(tmp_path: Path, data: bytes, problem: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(data)
    with pytest.raises(ConfigError, match=problem):
        load_config(cfg)


def test_threads_of_the_wrong_kind_is_one_line(tmp_path: Path, mlperf_models: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model:\n  path: {mlperf_models / 'kws_ref_model.tflite'}\n  options: {{threads: many}}\n")
    r = _cli("serve", "--config", str(cfg))
    assert r.returncode == 1 and "option 'threads' must be a whole number" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def _fifo(tmp_path: Path, name: str) -> Path:
    p = tmp_path / name
    os.mkfifo(p)
    return p


def test_fifos_are_refused_without_blocking(tmp_path: Path, mlperf_models: Path) -> None:
    model = str(mlperf_models / "kws_ref_model.tflite")
    cases = [
        ("serve", "--config", str(_fifo(tmp_path, "c.yaml"))),
        ("run", model, "--profile", str(_fifo(tmp_path, "p.yaml")), "--input", str(tmp_path / "none.npy")),
        ("verify", str(_fifo(tmp_path, "b.tar.gz")), "--insecure-skip-signature"),
        ("run", model, "--input", str(_fifo(tmp_path, "x.npy"))),
    ]
    for args in cases:
        r = _cli(*args, timeout=30)  # a blocked open would hit the timeout
        assert r.returncode != 0 and "not a regular file" in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr


def test_pickled_npz_input_is_one_line(tmp_path: Path, mlperf_models: Path) -> None:
    bad = tmp_path / "x.npz"
    np.savez(bad, input_1=np.array([{"a": 1}], dtype=object))
    r = _cli("run", str(mlperf_models / "kws_ref_model.tflite"), "--input", str(bad))
    assert r.returncode == 1 and "pickled" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_nan_input_is_refused_when_quantizing(tmp_path: Path, mlperf_models: Path) -> None:
    spec = TensorSpec("x", (1, 3), np.dtype(np.int8), 0.1, 0)
    with pytest.raises(InputError, match="NaN or infinite"):
        spec.quantize(np.array([[0.0, np.nan, 1.0]], np.float32))
    x = tmp_path / "x.npy"
    np.save(x, np.full((1, 49, 10, 1), np.nan, np.float32))
    r = _cli("run", str(mlperf_models / "kws_ref_model.tflite"), "--input", str(x), "--quantize")
    assert r.returncode == 1 and "NaN" in r.stderr, r.stderr


@pytest.mark.parametrize("backend", ["micro", "litert"])
def test_a_numpy_scalar_feeds_a_0d_input(tmp_path: Path, backend: str) -> None:
    """A 0-d model input (a Clip bound, a gain) takes a numpy scalar as it takes a 0-d array, on every
    backend; a Python number stays refused in one line (its dtype is ambiguous)."""
    import edge_runtime
    from tests.tflite_builder import T, build

    path = build(tmp_path / "add0d.tflite", "ADD", [T((), "float32"), T((), "float32")], [T((), "float32")])
    m = edge_runtime.load(str(path), backend=backend)
    got = m.run([np.float32(1.5), np.asarray(np.float32(2.25))])
    assert got[0].shape == () and float(got[0]) == 3.75
    with pytest.raises(InputError, match=r"^input '.*' must be a numpy array, got float$"):
        m.run([1.5, np.float32(2.0)])
