"""The daemon's config: YAML + pydantic, flag overrides, and one clear error per mistake."""
from __future__ import annotations

import subprocess
import sys

import pytest

from edge_runtime.daemon.config import load_config, parse_sink_url, parse_source_url
from edge_runtime.errors import ConfigError
from test_daemon_support import ROOT, env_for_subprocess

GOOD = """\
model:
  path: models/m.tflite
  labels: [a, b]
source: {type: tcp, port: 7000}
sinks:
  - {type: jsonl, path: out.jsonl}
  - {type: mqtt, host: 127.0.0.1, port: 1883, topic: t, offline_buffer: 50}
postprocess:
  - {type: smooth, window: 3}
  - {type: argmax}
  - {type: threshold, min_score: 0.6}
pipeline: {queue_size: 16, overload: drop_newest, max_batch_size: 4, max_queue_delay_ms: 2}
health: {listen: "127.0.0.1:9100"}
"""


def test_good_config_loads_and_resolves_paths_against_its_folder(tmp_path):
    f = tmp_path / "device.yaml"
    f.write_text(GOOD)
    cfg = load_config(f)
    assert cfg.model.path == str(tmp_path / "models" / "m.tflite")
    assert cfg.source.type == "tcp" and cfg.source.host == "127.0.0.1" and cfg.source.port == 7000
    assert [s.type for s in cfg.sinks] == ["jsonl", "mqtt"] and cfg.sinks[1].qos == 1
    assert cfg.pipeline.overload == "drop_newest" and cfg.pipeline.max_batch_size == 4


def test_flags_override_the_file_and_alone_need_no_file(tmp_path):
    f = tmp_path / "device.yaml"
    f.write_text(GOOD)
    cfg = load_config(f, {"model": {"path": "/x.tflite"}, "pipeline": {"queue_size": 99},
                          "source": parse_source_url("serial:///dev/ttyUSB0?baud=921600")})
    assert cfg.model.path == "/x.tflite" and cfg.model.labels == ["a", "b"]  # merged, not replaced
    assert cfg.pipeline.queue_size == 99 and cfg.pipeline.overload == "drop_newest"
    assert cfg.source.type == "serial" and cfg.source.port == "/dev/ttyUSB0" and cfg.source.baudrate == 921600
    flags_only = load_config(None, {"model": {"path": "m.tflite"}, "source": parse_source_url("tcp://127.0.0.1:5000")})
    assert flags_only.source.port == 5000 and flags_only.sinks[0].type == "jsonl"


@pytest.mark.parametrize("text, field, problem", [
    ("model: {path: m.tflite}\nsource: {type: tcp, port: 70000}\n", "source.port", "less than or equal to 65535"),
    ("model: {path: m.tflite}\nsource: {type: tcp, port: 1}\npipeline: {overload: drop_all}\n",
     "pipeline.overload", "'drop_oldest', 'drop_newest' or 'block'"),
    ("model: {path: m.tflite, bakend: litert}\nsource: {type: file, path: x.npy}\n", "model.bakend", "Extra inputs"),
    ("model: {path: m.tflite}\nsource: {type: usb}\n", "source", "does not match any of the expected tags"),
    ("model: {path: m.tflite}\nsource: {type: tcp, port: 1}\npostprocess: [{type: threshold, min_score: 0.5}]\n",
     "(top level)", "threshold must come after an argmax"),
    ("model: {path: m.tflite}\nsource: {type: tcp, port: 1}\nhealth: {listen: localhost}\n", "health.listen",
     "expected HOST:PORT or unix:PATH"),
    ("source: {type: tcp, port: 1}\n", "model", "required"),
])
def test_bad_config_names_file_field_and_problem(tmp_path, text, field, problem):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(f)
    msg = str(e.value)
    assert str(f) in msg and f"field '{field}'" in msg and problem in msg, msg


def test_unreadable_and_non_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")
    f = tmp_path / "x.yaml"
    f.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(f)
    f.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(f)


@pytest.mark.parametrize("url, expected", [
    ("tcp://127.0.0.1:7000", {"type": "tcp", "host": "127.0.0.1", "port": 7000}),
    ("tcp://0.0.0.0:7000", {"type": "tcp", "host": "0.0.0.0", "port": 7000}),
    ("serial://loop://", {"type": "serial", "port": "loop://"}),
    ("file:data.npy", {"type": "file", "path": "data.npy"}),
    ("file:-", {"type": "file", "path": "-"}),
])
def test_source_urls(url, expected):
    assert parse_source_url(url) == expected


def test_sink_urls_and_errors():
    assert parse_sink_url("jsonl:-") == {"type": "jsonl", "path": "-"}
    assert parse_sink_url("mqtt://broker:1884/a/b") == {"type": "mqtt", "host": "broker", "topic": "a/b", "port": 1884}
    assert parse_sink_url("serial") == {"type": "reply"}
    with pytest.raises(ConfigError, match="expected mqtt://HOST:PORT/TOPIC"):
        parse_sink_url("mqtt://broker:1884")
    with pytest.raises(ConfigError, match="--source 'udp://x:1'"):
        parse_source_url("udp://x:1")
    with pytest.raises(ConfigError, match="baud must be an integer"):
        parse_source_url("serial:///dev/ttyS0?baud=fast")


def test_cli_bad_config_is_one_line_without_traceback(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("model: {path: m.tflite}\nsource: {type: tcp, port: 1}\npipeline: {queue_size: 0}\n")
    cp = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "serve", "--config", str(f)], cwd=ROOT,
                        capture_output=True, env=env_for_subprocess(), timeout=60)
    err = cp.stderr.decode()
    assert cp.returncode == 1
    assert "Traceback" not in err
    assert f"edge-runtime: error: {f}: field 'pipeline.queue_size': Input should be greater than or equal to 1" in err


def test_cli_missing_model_file_is_a_clear_error(tmp_path):
    cp = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "serve", "--model", str(tmp_path / "nope.tflite"),
                         "--source", "file:-"], cwd=ROOT, capture_output=True, env=env_for_subprocess(), timeout=60,
                        stdin=subprocess.DEVNULL)
    err = cp.stderr.decode()
    assert cp.returncode != 0 and "Traceback" not in err and "nope.tflite" in err, err


def test_shipped_example_config_is_valid():
    cfg = load_config(ROOT / "examples" / "device.yaml")
    assert cfg.model.labels[3] == "No" and cfg.source.type == "serial"
    assert [s.type for s in cfg.sinks] == ["reply", "jsonl", "mqtt"] and cfg.sinks[2].qos == 1
    assert cfg.health.listen.startswith("127.0.0.1:")


def test_label_count_mismatch_is_a_config_error(tmp_path, mlperf_models):
    np_path = tmp_path / "x.npy"
    import numpy as np

    np.save(np_path, np.zeros((2, 1, 49, 10, 1), dtype=np.int8))
    cp = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "serve", "--model",
                         str(mlperf_models / "kws_ref_model.tflite"), "--labels", "a,b", "--source", f"file:{np_path}"],
                        cwd=ROOT, capture_output=True, env=env_for_subprocess(), timeout=60)
    err = cp.stderr.decode()
    assert cp.returncode == 1 and "Traceback" not in err
    assert "model.labels / postprocess: 2 labels given for an output of 12 values" in err


def test_npy_source_of_the_wrong_samples_is_refused(tmp_path, mlperf_models):
    import numpy as np

    for arr in (np.zeros((3, 1, 8, 8), np.float32), np.zeros((3, 1, 49, 10, 1), np.uint8)):
        np.save(tmp_path / "x.npy", arr)
        cp = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "serve", "--model",
                             str(mlperf_models / "kws_ref_model.tflite"), "--source", f"file:{tmp_path / 'x.npy'}"],
                            cwd=ROOT, capture_output=True, env=env_for_subprocess(), timeout=60)
        err = cp.stderr.decode()
        assert cp.returncode == 1 and "Traceback" not in err
        assert f"samples of shape {list(arr.shape[1:])} {arr.dtype}" in err and "int8[1, 49, 10, 1] (490 bytes)" in err
