"""Fleet files: the three layers, unknown keys, precise errors (file:line, path, problem)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from converters.fleet.loader import deep_merge, device_config, load_fleet
from edge_runtime.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "fleet" / "fleet.yaml"


def _fleet(tmp_path: Path, text: str) -> Path:
    (tmp_path / "m.onnx").write_bytes(b"\x08\x07")  # content is not read by validate
    (tmp_path / "m.tflite").write_bytes(b"x")
    (tmp_path / "calib.npy").write_bytes(b"x")
    (tmp_path / "labels.txt").write_text("cat\ndog\n")
    p = tmp_path / "fleet.yaml"
    p.write_text(text)
    return p


BASE = """\
version: 1
name: test
defaults:
  profile: rpi4-4gb
  convert: {formats: [tflite], calibration_samples: 50}
  daemon:
    pipeline: {queue_size: 32, max_batch_size: 4}
    sinks: [{type: jsonl, path: "-"}]
groups:
  pis:
    models:
      net: {source: m.onnx, calibration: calib.npy, labels: labels.txt, postprocess: [{type: argmax}]}
    daemon:
      pipeline: {queue_size: 16}
  mcu:
    profile: stm32h743
    models:
      net: {source: m.tflite, prebuilt: true}
devices:
  pi-1:
    group: pis
    daemon:
      pipeline: {max_batch_size: 2}
      sinks: [{type: mqtt, host: 127.0.0.1, topic: t/pi-1}]
  mcu-1: {group: mcu}
"""


def test_three_layers_merge(tmp_path: Path) -> None:
    fleet = load_fleet(_fleet(tmp_path, BASE))
    pis = fleet.groups["pis"]
    assert pis.profile.name == "rpi4-4gb"  # from defaults
    assert fleet.groups["mcu"].profile.name == "stm32h743"  # group overrides defaults
    # group over defaults: queue_size from the group, max_batch_size from defaults
    assert pis.daemon["pipeline"] == {"queue_size": 16, "max_batch_size": 4}
    dev = pis.devices["pi-1"]
    # device over group over defaults; lists are replaced, mappings merged
    assert dev["pipeline"] == {"queue_size": 16, "max_batch_size": 2}
    assert dev["sinks"] == [{"type": "mqtt", "host": "127.0.0.1", "topic": "t/pi-1"}]
    assert pis.models["net"].labels == ["cat", "dog"]
    assert pis.models["net"].convert == {"formats": ["tflite"], "calibration_samples": 50, "options": {}}
    cfg = device_config(pis, dev, "models/net.tflite")
    assert cfg["model"] == {"path": "models/net.tflite", "labels": ["cat", "dog"]}
    assert cfg["postprocess"] == [{"type": "argmax"}] and cfg["profile"] == "rpi4-4gb"
    assert "mcu-1" in fleet.groups["mcu"].devices


def test_device_yaml_is_a_valid_daemon_config(tmp_path: Path) -> None:
    """Reference: the daemon's own loader (edge_runtime.daemon.config.load_config)."""
    config = pytest.importorskip("edge_runtime.daemon.config")
    fleet = load_fleet(_fleet(tmp_path, BASE))
    pis = fleet.groups["pis"]
    p = tmp_path / "device.yaml"
    p.write_text(yaml.safe_dump(device_config(pis, pis.devices["pi-1"], "models/net.tflite")))
    cfg = config.load_config(p)
    assert cfg.pipeline.queue_size == 16 and cfg.pipeline.max_batch_size == 2
    assert cfg.sinks[0].type == "mqtt" and cfg.model.labels == ["cat", "dog"]
    assert Path(cfg.model.path) == tmp_path / "models" / "net.tflite"


def test_deep_merge_semantics() -> None:
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert deep_merge(base, {"a": {"c": [3]}, "e": 2}) == {"a": {"b": 1, "c": [3]}, "d": 1, "e": 2}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}  # inputs untouched


def _errors(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as ei:
        load_fleet(_fleet(tmp_path, text))
    return str(ei.value)


@pytest.mark.parametrize("old, new, expected", [
    # unknown keys at every layer, with the line of the key
    ("  profile: rpi4-4gb\n", "  profile: rpi4-4gb\n  profle: x\n", ":5: defaults.profle: unknown key"),
    ("    models:\n      net: {source: m.onnx,", "    modles: {}\n    models:\n      net: {source: m.onnx,",
     ":11: groups.pis.modles: unknown key"),
    ("  mcu-1: {group: mcu}", "  mcu-1: {group: mcu, colour: red}", ":25: devices.mcu-1.colour: unknown key"),
    ("calibration: calib.npy, labels", "calibration: calib.npy, lables: x, labels",
     ":12: groups.pis.models.net.lables: unknown key"),
    # types and references
    ("calibration_samples: 50", "calibration_samples: -5", ":5: defaults.convert.calibration_samples: Input should "
                                                           "be greater than or equal to 1 (got -5)"),
    ("formats: [tflite]", "formats: [tflite, caffe]", ":5: defaults.convert.formats.1: Input should be 'tflite' or "
                                                      "'onnx' (got 'caffe')"),
    ("  mcu-1: {group: mcu}", "  mcu-1: {group: mcus}", ":25: devices.mcu-1.group: no group named 'mcus'"),
    ("    profile: stm32h743", "    profile: stm32h744", ":16: groups.mcu.profile: unknown device profile 'stm32h744'"),
    ("source: m.onnx", "source: missing.onnx", ":12: groups.pis.models.net.source: source model 'missing.onnx' "
                                               "does not exist"),
    ("labels: labels.txt", "labels: nolabels.txt", ":12: groups.pis.models.net.labels: labels file"),
    ("source: m.onnx, calibration: calib.npy,", "source: m.onnx,", ":12: groups.pis.models.net: calibration data "
                                                                   "is required"),
    ("      net: {source: m.tflite, prebuilt: true}",
     "      net: {source: m.tflite, prebuilt: true}\n    daemon: {pipeline: {queue_size: 2}}",
     ":19: groups.mcu.daemon: profile 'stm32h743' is a microcontroller"),
    ("    daemon:\n      pipeline: {queue_size: 16}",
     "    serve: other\n    daemon:\n      pipeline: {queue_size: 16}", ":13: groups.pis.serve: no model named 'other'"),
    # merged daemon settings: the error points at the layer that set the bad value
    ("      pipeline: {queue_size: 16}", "      pipeline: {queue_size: 0}",
     ":14: groups.pis.daemon.pipeline.queue_size: Input should be greater than or equal to 1 (got 0)"),
    ("      pipeline: {max_batch_size: 2}", "      pipeline: {max_batch_size: 2, overload: panic}",
     ":23: devices.pi-1.daemon.pipeline.overload: Input should be 'drop_oldest', 'drop_newest' or 'block'"),
    ("    sinks: [{type: jsonl, path: \"-\"}]", "    sinks: [{type: jsonl, path: \"-\", fsync: true}]",
     ":8: defaults.daemon.sinks.0.fsync: unknown key"),
    ("name: test", "name: 'bad name!'", ":2: name: String should match pattern"),
])
def test_precise_errors(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in BASE, old
    msg = _errors(tmp_path, BASE.replace(old, new, 1))
    assert f"{tmp_path / 'fleet.yaml'}{expected}" in msg, msg


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    text = BASE.replace("  mcu-1: {group: mcu}", "  mcu-1: {group: nope}").replace("source: m.onnx", "source: x.onnx")
    msg = _errors(tmp_path, text)
    assert "(2 problems)" in msg and "devices.mcu-1.group" in msg and "groups.pis.models.net.source" in msg


def test_inherited_daemon_error_reported_once(tmp_path: Path) -> None:
    msg = _errors(tmp_path, BASE.replace("queue_size: 32", "queue_size: 0").replace("{queue_size: 16}", "{}"))
    assert msg.count("queue_size") == 1 and ":7: defaults.daemon.pipeline.queue_size" in msg


@pytest.mark.parametrize("text, problem", [
    ("name: [unclosed\n", ":2: not valid YAML"),
    ("- a\n", "must be a YAML mapping"),
    ("name: x\n", ":1: groups: required key is missing"),
    ("name: x\ngroups: {}\n", ":2: groups: Dictionary should have at least 1 item"),
    ("version: 2\nname: x\ngroups: {}\n", ":1: version: Input should be 1"),
])
def test_structural_errors(tmp_path: Path, text: str, problem: str) -> None:
    assert problem in _errors(tmp_path, text)


def test_missing_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such fleet file"):
        load_fleet(tmp_path / "none.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_fleet(tmp_path)


def test_user_profile_path_relative_to_fleet(tmp_path: Path) -> None:
    board = yaml.safe_load((ROOT / "device_profiles" / "boards" / "rpi4-4gb.yaml").read_text())
    board["name"] = "my-pi"
    (tmp_path / "boards").mkdir()
    (tmp_path / "boards" / "my-pi.yaml").write_text(yaml.safe_dump(board))
    fleet = load_fleet(_fleet(tmp_path, BASE.replace("profile: rpi4-4gb", "profile: boards/my-pi.yaml")))
    g = fleet.groups["pis"]
    assert g.profile.name == "my-pi" and not g.profile_is_shipped
    assert device_config(g, g.daemon, "m")["profile"] == "profile.yaml"
    board["cpu"]["cores"] = "four"
    (tmp_path / "boards" / "my-pi.yaml").write_text(yaml.safe_dump(board))
    msg = _errors(tmp_path, BASE.replace("profile: rpi4-4gb", "profile: boards/my-pi.yaml"))
    assert ":4: defaults.profile:" in msg and "my-pi.yaml" in msg and "cpu.cores" in msg


def test_example_fleet_validates() -> None:
    fleet = load_fleet(EXAMPLE)
    profiles = {g.profile.name for g in fleet.groups.values()}
    assert len(profiles) >= 4 and any(g.profile.microcontroller for g in fleet.groups.values())
    assert fleet.daemon_validated


def test_cli_validate(tmp_path: Path) -> None:
    ok = subprocess.run([sys.executable, "-m", "converters.cli", "fleet", "validate", str(EXAMPLE)],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "valid fleet 'digits-line'" in ok.stdout
    bad = _fleet(tmp_path, BASE.replace("profile: rpi4-4gb", "profile: rpi4-4gb\n  bogus: 1"))
    r = subprocess.run([sys.executable, "-m", "converters.cli", "fleet", "validate", str(bad)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"{bad}:5: defaults.bogus: unknown key" in r.stderr
