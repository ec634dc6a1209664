"""YAML chains, pydantic validation, and the `features` / `stream` commands."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from edge_runtime.cli import main
from edge_runtime.errors import ConfigError
from edge_runtime.preprocess import PreprocessConfig, build_preprocessor, load_config, preset_names
from edge_runtime.preprocess.audio import AudioStream


def test_presets_carry_the_reference_constants() -> None:
    assert {"kws", "sww"} <= set(preset_names())
    kws, sww = load_config("kws"), load_config("sww")
    assert isinstance(kws, PreprocessConfig)
    assert (kws.quantize.scale, kws.quantize.zero_point, kws.quantize.rounding) == (0.5847029089927673, 83, "trunc")
    assert (sww.quantize.scale, sww.quantize.zero_point, sww.quantize.overflow) == (0.003701042616739869, -128, "wrap")
    assert kws.audio.framing.length == 480 and kws.audio.n_fft == 512 and kws.audio.dct.coefficients == 10
    assert sww.audio.preemphasis == 0.96875 and sww.audio.periodic_window is False
    assert sww.input_shape == (1, 30, 1, 40) and kws.input_shape == (1, 49, 10, 1)


def test_yaml_file_equals_preset(tmp_path: Path) -> None:
    """A chain written to YAML (as the daemon/converter would keep it) builds the same stream."""
    d = load_config("sww").model_dump(exclude={"base_dir"})
    path = tmp_path / "chain.yaml"
    path.write_text(yaml.safe_dump(d))
    a, b = build_preprocessor(path), build_preprocessor("sww")
    x = (np.sin(np.arange(16384) / 7.0) * 9000).astype(np.int16)
    assert a.push(x) == b.push(x) == 2 and np.array_equal(a.windows[:2], b.windows[:2])
    assert isinstance(a, AudioStream) and load_config(path).base_dir == str(tmp_path)


@pytest.mark.parametrize("patch, match", [
    ({"audio": {"framing": {"length": 480, "stepp": 320}}}, "stepp"),
    ({"audio": {"framing": {"length": 480, "step": 960}}}, "longer than the frame"),
    ({"audio": {"fft_length": 256}}, "shorter than the frame"),
    ({"audio": {"mel": {"bands": 40, "fmax": 9000.0}}}, "Nyquist"),
    ({"audio": {"dct": {"coefficients": 41}}}, "only 40 bands"),
    ({"audio": {"window": "kaiser"}}, "window"),
    ({"quantize": {"dtype": "int4"}}, "dtype"),
    ({"windows": None}, "needs a `windows` section"),
    ({"image": {"resize": "area"}}, "cannot have section"),
    ({"kind": "video"}, "kind"),
])
def test_invalid_configs_name_the_problem(patch: dict, match: str) -> None:
    d = load_config("kws").model_dump()
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(d.get(k), dict):
            d[k] = {**d[k], **v}
        else:
            d[k] = v
    with pytest.raises(ConfigError, match=match):
        load_config(d)


def test_int8_without_scale_is_refused_unless_a_model_spec_is_given() -> None:
    from edge_runtime.model import TensorSpec

    d = load_config("sww").model_dump()
    d["quantize"] = {"dtype": "int8"}
    with pytest.raises(ConfigError, match="quantize.scale is not set"):
        build_preprocessor(d)
    s = build_preprocessor(d, TensorSpec("x", (1, 30, 1, 40), np.dtype(np.int8), 0.003701042616739869, -128))
    assert s.windows.dtype == np.int8


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such preprocessing config file or preset"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [audio\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_config(bad)
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError):
        load_config(bad)


# -- commands -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def audio_dir(shared: Path) -> Path:
    return shared / "models" / "mlperf_tiny" / "data" / "audio"


def test_features_command_writes_model_inputs(audio_dir: Path, shared: Path, tmp_path: Path, capsys) -> None:
    """`features sww --wav` -> (282, 1, 30, 1, 40) int8; window i = golden frames i..i+29 (1 code may differ)."""
    out = tmp_path / "f.npy"
    assert main(["features", "sww", "--wav", str(audio_dir / "short_wav_easy10s.wav"), "--output", str(out)]) == 0
    x = np.load(out)
    assert x.shape == (282, 1, 30, 1, 40) and x.dtype == np.int8
    gold = np.load(shared / "models" / "features" / "sww_golden" / "short_wav_easy10s_lfbe_int8.npy")
    assert np.array_equal(x[0].reshape(30, 40), gold[:30])
    assert np.abs(x[200].reshape(30, 40).astype(int) - gold[200:230]).max() <= 1
    assert "282 windows" in capsys.readouterr().out
    # kws: one row per 1 s clip, the last one padded
    out2 = tmp_path / "k.npy"
    assert main(["features", "kws", "--wav", str(audio_dir / "marvin_617de221_0.wav"), "-o", str(out2)]) == 0
    k = np.load(out2)
    golden = np.load(shared / "models" / "features" / "kws_golden" / "clip0_marvin_617de221_0_input_int8.npy")
    assert k.shape == (1, 1, 49, 10, 1) and np.array_equal(k[0].reshape(49, 10), golden)


def test_features_command_errors(tmp_path: Path, capsys) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x00garbage")
    assert main(["features", "sww", "--wav", str(junk)]) == 1
    assert "not a readable PCM WAV file" in capsys.readouterr().err
    assert main(["features", "nonexistent_preset", "--wav", str(junk)]) == 1
    err = capsys.readouterr().err
    assert "no such preprocessing config file or preset" in err and "Traceback" not in err
    assert main(["features", "sww", "--wav", str(tmp_path / "missing.wav")]) == 1
    assert "no such WAV file" in capsys.readouterr().err


def test_stream_command_json_reference_and_smoothed(audio_dir: Path, mlperf_models: Path, capsys) -> None:
    """`stream --json`: reference policy 2 TP / 1 FN / 0 FP; smoothed 3 / 0 / 0; detections timestamped."""
    base = ["stream", str(mlperf_models / "str_ww_ref_model.tflite"), "--preset", "sww",
            "--wav", str(audio_dir / "short_wav_easy10s.wav"), "--truth", str(audio_dir / "sww_short_test.json"),
            "--backend", "litert", "--json"]
    assert main(base + ["--policy", "reference"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["invocations"] == 282
    assert (doc["score"]["true_positives"], doc["score"]["false_negatives"], doc["score"]["false_positives"]) == (2, 1, 0)
    assert doc["detections"][0]["time_s"] == 1.408 and doc["detections"][0]["invocation"] == 13
    assert main(base + ["--policy", "smoothed"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["score"]["true_positives"], doc["score"]["false_negatives"], doc["score"]["false_positives"]) == (3, 0, 0)
    assert len(doc["detections"]) == 3


def test_stream_command_kws_labels(audio_dir: Path, mlperf_models: Path, capsys) -> None:
    """kws on the 10 s file: ten 1 s windows with labels and times; text output."""
    assert main(["stream", str(mlperf_models / "kws_ref_model.tflite"), "--preset", "kws",
                 "--wav", str(audio_dir / "short_wav_easy10s.wav"), "--backend", "litert"]) == 0
    out = capsys.readouterr().out
    assert "10 invocations" in out
    assert "   0.000-1.000 s  " in out and "   9.000-10.000 s  " in out


def test_stream_command_refuses_mismatched_model(audio_dir: Path, mlperf_models: Path, capsys) -> None:
    assert main(["stream", str(mlperf_models / "kws_ref_model.tflite"), "--preset", "sww",
                 "--wav", str(audio_dir / "marvin_617de221_0.wav"), "--backend", "litert"]) == 1
    assert "30 frames x 40 features" in capsys.readouterr().err


def test_help_explains_options(capsys) -> None:
    for cmd in ("features", "stream"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        text = capsys.readouterr().out
        assert "--wav" in text and "Examples" in text


def _write_wav(path: Path, rate: int, samples: np.ndarray) -> None:
    """A mono 16-bit WAV file of ``samples`` at ``rate`` Hz."""
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype(np.int16).tobytes())


def test_stream_command_short_wav_gives_no_invocations(mlperf_models: Path, tmp_path: Path, capsys) -> None:
    """A recording shorter than one sww window (0.99 s) runs no model and says so; no traceback."""
    path = tmp_path / "short.wav"
    _write_wav(path, 16000, np.zeros(8000, np.int16))
    assert main(["stream", str(mlperf_models / "str_ww_ref_model.tflite"), "--preset", "sww",
                 "--wav", str(path), "--backend", "litert"]) == 0
    out = capsys.readouterr().out
    assert "0 invocations" in out and "no detections" in out
    _write_wav(path, 8000, np.zeros(8000, np.int16))
    assert main(["stream", str(mlperf_models / "str_ww_ref_model.tflite"), "--preset", "sww",
                 "--wav", str(path), "--backend", "litert"]) == 1
    assert "sample rate 8000 Hz" in capsys.readouterr().err
