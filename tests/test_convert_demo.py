"""``edge-convert demo``: the README's first command, on the shipped digits model."""
from __future__ import annotations

import re

from converters.cli import main as edge_convert


def test_demo_converts_plans_runs_and_reports(tmp_path, capsys):
    rc = edge_convert(["demo", "-o", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert (tmp_path / "digits_cnn_int8.tflite").exists() and (tmp_path / "report.json").exists()
    m = re.search(r"accuracy (\d\.\d+) \((\d+)/40\); float model (\d\.\d+)", out)
    assert m, out
    assert float(m.group(1)) >= float(m.group(3)) - 0.05  # 40 images: at most 2 more mistakes than float
    assert re.search(r"latency per inference: median [\d.]+ ms, p90 [\d.]+ ms", out)
    assert re.search(r"arena plan \(.*\): [\d,]+ B", out) and "memory: model" in out
    preds = re.search(r"predicted: ([\d ]+)\n", out).group(1).split()
    labels = re.search(r"label: +([\d ]+)\n", out).group(1).split()
    assert len(preds) == len(labels) == 40
    assert "backend micro" in out or "backend litert" in out


def test_demo_with_another_profile_and_the_onnx_model(capsys):
    rc = edge_convert(["demo", "--profile", "stm32h743", "--backend", "onnx"])
    out = capsys.readouterr().out
    assert rc == 0 and "backend onnx on profile stm32h743" in out and "TFLM persistent data" in out


def test_demo_stderr_has_no_litert_info_line(tmp_path):
    """The converter's own LiteRT interpreters go through the native-stderr filter: no 'INFO: Created
    TensorFlow Lite XNNPACK delegate' line on a clean run."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "converters.cli", "demo", "-o", str(tmp_path)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "INFO: Created TensorFlow Lite" not in r.stderr and "INFO: Created TensorFlow Lite" not in r.stdout
