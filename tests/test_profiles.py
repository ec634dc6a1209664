"""Device profiles: the shipped boards, the schema's checks and `edge-convert profiles`."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from converters.cli import main as convert_main
from device_profiles import BOARDS_DIR, load_profile, list_profiles, profile_names
from device_profiles.schema import parse_size
from edge_runtime.errors import ConfigError
from edge_runtime.formats.tflite_ops import BUILTIN_OPERATORS

REQUIRED_BOARDS = {
    "rpi5", "rpi4-4gb", "rpi3bplus-32bit", "rpi-zero-2w", "beaglebone-black", "coral-devboard",
    "coral-usb-rpi4", "imx8mp", "jetson-orin-nano", "stm32h743", "esp32-s3", "nrf52840",
}
MCUS = {"stm32h743", "esp32-s3", "nrf52840"}


def test_all_required_boards_ship_and_validate() -> None:
    assert REQUIRED_BOARDS <= set(profile_names())
    profiles = list_profiles()
    assert len(profiles) >= 12
    for p in profiles:
        assert (BOARDS_DIR / f"{p.name}.yaml").exists(), f"profile name {p.name} must match its file name"


@pytest.mark.parametrize("name", sorted(REQUIRED_BOARDS))
def test_board_cites_datasheets_in_comment_and_sources(name: str) -> None:
    text = (BOARDS_DIR / f"{name}.yaml").read_text()
    p = load_profile(name)
    assert p.sources and all(s.startswith("https://") for s in p.sources)
    comments = "\n".join(line for line in text.splitlines() if line.lstrip().startswith("#"))
    assert any(s.split("#")[0] in comments for s in p.sources), "the first comment block must cite a source"
    assert p.inference_ram_budget_bytes < p.ram_bytes


def test_datasheet_values_of_known_boards() -> None:
    """Spot values against the vendors' datasheets cited in the files."""
    rpi5 = load_profile("rpi5")
    assert (rpi5.cpu.model, rpi5.cpu.cores, rpi5.cpu.clock_mhz) == ("Cortex-A76", 4, 2400)
    assert "dotprod" in rpi5.cpu.simd
    pi3 = load_profile("rpi3bplus-32bit")
    assert pi3.arch == "armv7l" and "litert" not in pi3.backends and "tflite" in pi3.backends
    stm = load_profile("stm32h743")
    assert (stm.ram_bytes, stm.storage_bytes, stm.cpu.clock_mhz) == (1 << 20, 2 << 20, 480)
    nrf = load_profile("nrf52840")
    assert (nrf.ram_bytes, nrf.storage_bytes, nrf.cpu.clock_mhz) == (256 << 10, 1 << 20, 64)
    esp = load_profile("esp32-s3")
    assert (esp.cpu.cores, esp.cpu.clock_mhz, esp.ram_bytes) == (2, 240, 512 << 10)
    jet = load_profile("jetson-orin-nano")
    assert [a.provider for a in jet.accelerators] == ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    imx = load_profile("imx8mp")
    assert imx.accelerators[0].library == "libvx_delegate.so"


def test_microcontrollers_are_sizing_only() -> None:
    for p in list_profiles():
        if p.name in MCUS:
            assert p.microcontroller and not p.python
        else:
            assert p.python and not p.microcontroller and p.backends


def test_edge_tpu_entries_list_real_tflite_ops_and_constraints() -> None:
    builtin = set(BUILTIN_OPERATORS.values())
    for name in ("coral-devboard", "coral-usb-rpi4"):
        acc = load_profile(name).accelerators[0]
        assert acc.library == "libedgetpu.so.1"
        assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "SOFTMAX"} <= set(acc.supported_ops)
        assert "CUSTOM" not in acc.supported_ops
        assert len(acc.constraints) >= 5
        assert any("8-bit" in c for c in acc.constraints)
    assert load_profile("coral-usb-rpi4").accelerators[0].options == {"device": "usb"}
    for p in list_profiles():
        for acc in p.accelerators:
            unknown = [op for op in acc.supported_ops if op not in builtin]
            assert not unknown, f"{p.name}/{acc.name}: not TFLite builtin op names: {unknown}"


def test_parse_size_units() -> None:
    assert parse_size("512 KiB") == 524288
    assert parse_size("2MB") == 2_000_000
    assert parse_size("1.5 GiB") == 3 << 29
    assert parse_size(17) == 17
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")


def _write(tmp_path: Path, data: object, name: str = "board.yaml") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return p


def _base() -> dict:
    return yaml.safe_load((BOARDS_DIR / "rpi4-4gb.yaml").read_text())


def test_user_profile_by_path(tmp_path: Path) -> None:
    d = _base()
    d["name"] = "my-board"
    d["ram_bytes"] = "2 GiB"
    d["inference_ram_budget_bytes"] = "1 GiB"
    p = load_profile(_write(tmp_path, d))
    assert p.name == "my-board" and p.ram_bytes == 2 << 30


@pytest.mark.parametrize("mutate, field, problem", [
    (lambda d: d.update(ram_byts=1), "ram_byts", "unknown field"),
    (lambda d: d.pop("arch"), "arch", "required field is missing"),
    (lambda d: d["cpu"].update(cores=0), "cpu.cores", "greater than or equal to 1"),
    (lambda d: d.update(ram_bytes="four gigs"), "ram_bytes", "not a size"),
    (lambda d: d.update(backends=["tensorflow"]), "backends.0", "'litert'"),
    (lambda d: d.update(inference_ram_budget_bytes="8 GiB"), "(top level)", "exceeds ram_bytes"),
    (lambda d: d.update(accelerators=[{"name": "x", "kind": "onnx_ep"}]), "accelerators.0", "needs 'provider'"),
])
def test_bad_profile_names_file_field_and_problem(tmp_path: Path, mutate, field: str, problem: str) -> None:
    d = _base()
    mutate(d)
    path = _write(tmp_path, d)
    with pytest.raises(ConfigError) as ei:
        load_profile(path)
    msg = str(ei.value)
    assert str(path) in msg and f"field '{field}'" in msg and problem in msg, msg


@pytest.mark.parametrize("content, problem", [
    ("name: [unclosed\n", "not valid YAML at line"),
    ("- a\n- b\n", "must be a YAML mapping"),
    ("", "must be a YAML mapping"),
])
def test_unparsable_profile_files(tmp_path: Path, content: str, problem: str) -> None:
    path = _write(tmp_path, content)
    with pytest.raises(ConfigError, match=problem) as ei:
        load_profile(path)
    assert str(path) in str(ei.value)


def test_unknown_profile_name_lists_known() -> None:
    with pytest.raises(ConfigError, match="unknown device profile 'rpi9'.*rpi5"):
        load_profile("rpi9")


def test_profiles_command_json_round_trips(capsys: pytest.CaptureFixture[str]) -> None:
    assert convert_main(["profiles", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {d["name"] for d in data} == set(profile_names())
    from device_profiles import DeviceProfile
    for d in data:
        assert DeviceProfile.model_validate(d) == load_profile(d["name"])


def test_profiles_command_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert convert_main(["profiles"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("NAME")
    assert len(out) == 1 + len(profile_names())
    row = next(line for line in out if line.startswith("coral-usb-rpi4"))
    assert "libedgetpu.so.1" in row and "Cortex-A72" in row


def test_profiles_command_bad_file_is_one_clean_error(tmp_path: Path) -> None:
    d = _base()
    d["cpu"]["clock_mhz"] = "fast"
    path = _write(tmp_path, d)
    r = subprocess.run([sys.executable, "-m", "converters.cli", "profiles", "--profile", str(path)],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("edge-convert: error: ")
    assert str(path) in r.stderr and "field 'cpu.clock_mhz'" in r.stderr
