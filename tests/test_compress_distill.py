"""Knowledge distillation (converters/compress/distill.py, ``edge-convert distill``) of the digits CNN.

References: the teacher (float ONNX run by edge-runtime's onnx backend) on the held-out split;
the int8 student on LiteRT, onnxruntime and the micro backend. PyTorch is an optional extra: these
tests skip without it, except under CI=true, where CI installs torch==2.13.0.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from converters.cli import main
from converters.compress.distill import parse_student
from edge_runtime.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
TEACHER = ROOT / "converters" / "data" / "digits_cnn.onnx"
HELD = ROOT / "tests" / "fixtures" / "digits" / "digits_heldout.npz"


def _require_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but PyTorch is missing: CI must `pip install torch==2.13.0`")
        pytest.skip("PyTorch (the optional 'distill' extra) is not installed: pip install torch==2.13.0")


@pytest.fixture(scope="module")
def unlabeled(tmp_path_factory):
    """The digits training split (the teacher's own training images), without labels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None]
    x_tr, _, _, _ = train_test_split(x, d.target, test_size=0.25, random_state=0, stratify=d.target)
    out = tmp_path_factory.mktemp("unlabeled")
    np.save(out / "train.npy", x_tr)
    return out


@pytest.mark.parametrize("spec,expected", [
    ("mlp:hidden=64x32", ("mlp", (64, 32))),
    ("dscnn:channels=8,blocks=3", ("dscnn", 8)),
    ("mobilenet:alpha=0.5,blocks=2", ("mobilenet", 0.5)),
])
def test_student_specs_parse(spec, expected):
    s = parse_student(spec)
    assert s.arch == expected[0]
    assert expected[1] in (s.hidden, s.channels, s.alpha)
    assert parse_student(s.describe()) == s


@pytest.mark.parametrize("spec", ["resnet:depth=8", "mlp:hidden=0", "dscnn:alpha=1", "mobilenet:alpha=x", "mlp:64"])
def test_bad_student_specs_name_the_problem(spec):
    with pytest.raises(ConfigError, match="--student"):
        parse_student(spec)


def test_bad_student_spec_on_the_command_line_is_one_clear_error(unlabeled, tmp_path, capsys):
    code = main(["distill", str(TEACHER), "--student", "transformer", "--data", str(unlabeled), "-o", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "unknown architecture 'transformer'" in err and "Traceback" not in err


def test_only_the_distill_command_imports_torch():
    code = ("import sys\n"
            "import converters.compress.prune, converters.compress.sparse, converters.compress.search\n"
            "import converters.compress.quality, converters.compress.convert, converters.compress.report\n"
            "import converters.compress.distill, converters.commands.prune, converters.commands.distill\n"
            "import edge_runtime.backends.micro.kernels.sparse\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_missing_torch_is_a_clear_error(monkeypatch, unlabeled, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    code = main(["distill", str(TEACHER), "--student", "mlp:hidden=16", "--data", str(unlabeled), "-o", str(tmp_path)])
    err = capsys.readouterr().err
    assert code != 0 and "pip install torch==2.13.0" in err and "Traceback" not in err


def test_distilled_student_is_smaller_converts_and_runs_on_every_backend(unlabeled, tmp_path, capsys):
    _require_torch()
    z = np.load(HELD)
    ev = tmp_path / "eval.npz"
    np.savez(ev, x=z["x"][:150], y=z["y"][:150])
    code = main(["distill", str(TEACHER), "--student", "mlp:hidden=32", "--data", str(unlabeled), "--epochs", "6",
                 "--augment", "1", "--eval", str(ev), "-o", str(tmp_path / "student")])
    assert code == 0
    rep = json.loads((tmp_path / "student" / "distill_report.json").read_text())
    assert rep["student_params"] < 0.5 * rep["teacher_params"]
    q = rep["quality"]
    teacher = q["teacher"]["value"]
    assert teacher > 90
    # a short run (6 epochs, the test budget); the full 40-epoch figure is in benchmarks/compress.py
    assert q["student_float"]["value"] >= teacher - 10.0, q
    for backend in ("litert", "onnx", "micro"):
        got = q[f"student_int8_{backend}"]
        assert got is not None, rep["errors"]
        # int8 within 2 points (3 of the 150 images) of the float student it was converted from
        assert got["value"] >= q["student_float"]["value"] - 2.0, (backend, got, q["student_float"])
    assert (tmp_path / "student" / "student.onnx").is_file()
