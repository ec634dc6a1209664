"""End to end: the simulated firmware streams kws01 frames to ``edge-runtime serve``.

Reference for outputs: ``edge-runtime run kws_ref_model.tflite --backend litert`` on the same
inputs (LiteRT, the backend the daemon serves with), compared byte for byte.
"""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

import edge_runtime
from test_daemon_support import KWS_LABELS, DaemonProc, read_jsonl, run_sensor, start_sensor


@pytest.fixture(scope="module")
def kws_files(tmp_path_factory, kws01, mlperf_models):
    """kws01 inputs as one .npy and the reference outputs of ``edge-runtime run`` (LiteRT) for them."""
    import subprocess
    import sys

    from test_daemon_support import ROOT, env_for_subprocess

    d = tmp_path_factory.mktemp("kws")
    x = kws01[0]
    model_path = mlperf_models / "kws_ref_model.tflite"
    np.save(d / "x.npy", x)
    cp = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "run", str(model_path), "--backend", "litert",
                         "--input", str(d / "x.npy"), "--output", str(d / "ref.npy")],
                        cwd=ROOT, env=env_for_subprocess(), capture_output=True, timeout=300)
    assert cp.returncode == 0, cp.stderr.decode()
    ref = np.load(d / "ref.npy")
    assert ref.shape == (len(x), 1, 12) and ref.dtype == np.int8
    # the same as the library call on the same inputs
    model = edge_runtime.load(model_path, backend="litert")
    assert np.array_equal(ref, np.stack([model.run(x[i])[0] for i in range(len(x))]))
    return d / "x.npy", d / "ref.npy", ref, model_path


def _wait_for(path, timeout=30):
    end = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > end:
            raise AssertionError(f"{path} did not appear")
        time.sleep(0.05)


@pytest.mark.parametrize("faults", [
    ["--burst", "1", "--faults", "flip"],  # independent byte errors: most 500-byte frames are hit
    ["--burst", "24", "--faults", "flip,drop,garbage", "--garbage-between", "0.05"],  # bursty line noise
], ids=["independent-bytes", "bursts"])
def test_pty_link_one_percent_corruption(tmp_path, kws_files, faults):
    x_path, ref_path, ref, model_path = kws_files
    link = tmp_path / "tty"
    report = tmp_path / "report.json"
    out = tmp_path / "results.jsonl"
    sensor = start_sensor(["--port", f"pty:{link}", "--npy", str(x_path), "--corrupt", "0.01", "--seed", "7",
                           "--expect", str(ref_path), "--report", str(report), "--wait-hello", "60",
                           "--wait-results", "30", *faults])
    _wait_for(link)
    d = DaemonProc(["--model", str(model_path), "--backend", "litert", "--source", f"serial://{link}",
                    "--sink", "reply", "--sink", f"jsonl:{out}", "--health", "127.0.0.1:0", "--overload", "block",
                    "--labels", KWS_LABELS])
    try:
        d.wait_ready()
        so, se = sensor.communicate(timeout=180)
        summary = json.loads(so.decode().strip().splitlines()[-1])
        rep = json.loads(report.read_text())
        m = d.metrics()
        assert d.stop() == 0, d.stderr
    finally:
        d.kill()
        if sensor.poll() is None:
            sensor.kill()
    assert summary["frames_sent"] == 1000
    assert summary["bytes_corrupted"] >= 0.009 * summary["bytes_sent"] * (0.5 if "--garbage-between" in faults else 1)
    intact = rep["intact_seqs"]
    corrupted = rep["corrupted_seqs"]
    assert len(intact) + len(corrupted) == 1000 and len(intact) >= 1 and len(corrupted) >= 1
    # the device got exactly one result per intact frame, and each equals LiteRT's output
    assert summary["missing_results"] == 0 and summary["mismatches"] == 0, summary
    assert summary["results_received"] == len(intact)
    # the daemon decoded exactly the intact frames and counted every corrupted one as lost
    assert m["edge_runtime_frames_received_total"] == len(intact)
    assert m["edge_runtime_frames_lost_total"] == len(corrupted)
    assert m["edge_runtime_frames_corrupt_total"] >= len(corrupted)
    assert m["edge_runtime_results_total"] == len(intact)
    assert m["edge_runtime_reply_dropped_total"] == 0
    # the JSON Lines sink holds the same results: one per intact frame, raw output = LiteRT's
    rows = read_jsonl(out)
    assert sorted(r["seq"] for r in rows) == sorted(intact)
    for r in rows:
        assert np.array_equal(np.array(r["raw"], dtype=np.int8), ref[r["seq"]].reshape(-1))
        assert r["label"] == KWS_LABELS.split(",")[int(np.argmax(ref[r["seq"]]))]


def test_tcp_link_with_disconnects_and_replies(tmp_path, kws_files):
    """Reconnects: each connection is a new link; every intact frame still gets its one result."""
    x_path, ref_path, ref, model_path = kws_files
    d = DaemonProc(["--model", str(model_path), "--backend", "litert", "--source", "tcp://127.0.0.1:0",
                    "--sink", "reply", "--health", "127.0.0.1:0", "--overload", "block"])
    try:
        d.wait_ready()
        summary, cp = run_sensor(["--port", f"tcp://127.0.0.1:{d.tcp_port}", "--npy", str(x_path), "--count", "300",
                                  "--disconnect-every", "100", "--pause", "0.1", "--expect", str(ref_path)])
        m = d.metrics()
        assert d.stop() == 0, d.stderr
    finally:
        d.kill()
    assert cp.returncode == 0, cp.stderr.decode()
    assert summary["disconnects"] == 2 and summary["frames_corrupted"] == 2
    assert summary["results_received"] == summary["samples_intact"] == 298
    assert summary["mismatches"] == 0 and summary["missing_results"] == 0
    assert m["edge_runtime_connections_total"] == 3
    assert m["edge_runtime_frames_corrupt_total"] == 2  # the two frames cut by the disconnects


def test_run_over_stdin_capture_matches_model_run(tmp_path, kws_files):
    """A framed capture on stdin (``--source file:-``) gives LiteRT's outputs, in order."""
    from edge_runtime.daemon import framing

    x_path, _ref_path, ref, model_path = kws_files
    x = np.load(x_path)[:64]
    stream = b"".join(framing.encode_frame(framing.DATA, i, x[i].tobytes()) for i in range(64))
    import subprocess
    import sys

    from test_daemon_support import ROOT, env_for_subprocess

    cp = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "serve", "--model", str(model_path),
                         "--backend", "litert", "--source", "file:-", "--sink", "jsonl:-"],
                        input=stream, capture_output=True, cwd=ROOT, env=env_for_subprocess(), timeout=120)
    assert cp.returncode == 0, cp.stderr.decode()
    rows = [json.loads(ln) for ln in cp.stdout.decode().splitlines()]
    assert [r["seq"] for r in rows] == list(range(64))
    assert np.array_equal(np.array([r["raw"] for r in rows], dtype=np.int8), ref[:64].reshape(64, -1))
