"""``edge-convert prune`` and the profile search (converters/compress/search.py) on the digits CNN.

References: the device profile's flash budget (a test profile derived from nrf52840), the
unpruned int8 model's accuracy on the held-out split (LiteRT), the float model (onnxruntime).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from converters.cli import main
from converters.compress.search import compress_model
from helpers import board_variant

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "converters" / "data" / "digits_cnn.onnx"
HELD = ROOT / "tests" / "fixtures" / "digits" / "digits_heldout.npz"
CALIB = ROOT / "converters" / "data" / "digits_calib.npz"


@pytest.fixture()
def small_flash_profile(tmp_path):
    """nrf52840 with an 11,000-byte model flash budget: the unpruned digits int8 model (~12.4 kB) is over."""
    return board_variant(tmp_path, "nrf52840", "nrf52840-11k", model_flash_budget_bytes=11000)


def test_fit_profile_finds_the_least_structured_pruning_that_fits(small_flash_profile, tmp_path):
    res = compress_model(MODEL, small_flash_profile, CALIB, tmp_path, fit_profile=True, structured=True,
                         max_drop=2.0, data=HELD, levels=(0.05, 0.1, 0.2, 0.3))
    assert not res.baseline.fits and res.baseline.flash_bytes > 11000
    c = res.chosen
    assert c is not None and c.fits and c.flash_bytes <= 11000
    assert all(not earlier.fits for earlier in res.candidates[:-1])  # the least level that fits
    assert c is res.candidates[-1]
    assert c.arena_bytes < res.baseline.arena_bytes  # fewer channels: a smaller arena too
    assert c.quality.metric == "accuracy" and c.drop <= 2.0
    report = json.loads((tmp_path / "prune_report.json").read_text())
    assert report["chosen"]["flash_bytes"] == c.flash_bytes and report["baseline"]["fits"] is False


def test_fit_profile_stops_when_the_drop_would_exceed_max_drop(small_flash_profile, tmp_path, capsys):
    code = main(["prune", str(MODEL), "--fit-profile", str(small_flash_profile), "--calib", str(CALIB),
                 "--data", str(HELD), "--max-drop", "0.5", "--no-refit", "-o", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 3  # does not fit
    assert "--max-drop 0.5" in out + err and "Traceback" not in err
    report = json.loads((tmp_path / "prune_report.json").read_text())
    assert report["chosen"] is None
    last = report["candidates"][-1]
    assert last["drop_points"] > 0.5 and not any(c["fits"] for c in report["candidates"])


def test_prune_command_with_sparsity_writes_dense_and_sparse_models(tmp_path, capsys):
    code = main(["prune", str(MODEL), "--sparsity", "0.5", "--calib", str(CALIB), "--data", str(HELD),
                 "-o", str(tmp_path), "--json"])
    assert code == 0
    rep = json.loads(capsys.readouterr().out)
    c = rep["chosen"]
    assert Path(c["tflite"]).is_file() and Path(c["sparse_tflite"]).is_file()
    assert c["flash_bytes"] == Path(c["sparse_tflite"]).stat().st_size < rep["baseline"]["flash_bytes"]
    assert abs(c["sparsity"] - 0.5) < 0.01
    assert c["drop_points"] <= 1.5  # accuracy points vs the unpruned int8 model, held-out split


@pytest.mark.parametrize("argv,needle", [
    (["--sparsity", "1.5"], "between 0 and 1"),
    (["--sparsity", "0.5", "--block", "0"], "--block"),
    (["--sparsity", "0.5", "--data", "/nonexistent.npz"], "not found"),
])
def test_bad_prune_arguments_give_one_clear_error(argv, needle, tmp_path, capsys):
    code = main(["prune", str(MODEL), "--calib", str(CALIB), "-o", str(tmp_path)] + argv)
    err = capsys.readouterr().err
    assert code == 1 and needle in err and "Traceback" not in err


def test_garbage_model_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage" * 10)
    code = main(["prune", str(bad), "--sparsity", "0.5", "--calib", str(CALIB), "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1 and "bad.onnx" in err and "Traceback" not in err


def test_prune_help_explains_the_options(capsys):
    with pytest.raises(SystemExit):
        main(["prune", "--help"])
    out = capsys.readouterr().out
    for word in ("--sparsity", "--fit-profile", "--max-drop", "--structured", "anomaly score", "SparsityParameters"):
        assert word in out
