"""The converter's fast paths change its speed, never its results.

- the CLI without ``--plot`` imports neither matplotlib nor tqdm and writes no report.png (and the
  markdown links none); with ``--plot`` it writes and links the PNG;
- ``report.json`` has a time for every phase;
- one float run per calibration sample serves the ranges, the bias-correction means and the
  report (the activations of a small model are kept), and gives the same ranges, means and
  report as running the float model again for each step.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import converters.calibrate as calibrate_mod
import converters.calibration_histograms as histograms_mod
from converters.calibrate import FloatRuns, calibrate
from converters.calibration_data import open_calibration
from converters.pipeline import convert_model, import_model
from converters.quality.bias_correction import InputMeans, input_means
from converters.report import want_plot

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "converters" / "data"
PHASES = ("import_s", "calibrate_s", "quantize_s", "write_s", "fit_s", "report_s", "total_s")

CHILD = r"""
import json, sys
from converters.cli import main
rc = main(sys.argv[1:])
heavy = sorted(m for m in ("matplotlib", "tqdm", "sympy", "onnxslim", "pydantic", "yaml") if m in sys.modules)
print(json.dumps({"rc": rc, "heavy": heavy}))
"""


def _cli(out: Path, *extra: str) -> dict:
    args = ["convert", str(DATA / "digits_cnn.onnx"), "--profile", "rpi4-4gb", "--calib",
            str(DATA / "digits_calib.npz"), "-o", str(out), *extra]
    r = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_cli_without_plot_imports_no_matplotlib_and_writes_no_png(tmp_path):
    out = tmp_path / "out"
    (out).mkdir()
    (out / "report.png").write_bytes(b"stale")  # an earlier run's plot must not stay next to a new report
    child = _cli(out)
    assert child["rc"] == 0
    assert "matplotlib" not in child["heavy"] and "tqdm" not in child["heavy"]
    assert not {"sympy", "onnxslim", "pydantic", "yaml"} & set(child["heavy"])  # nothing to fold, shipped profile
    rep = json.loads((out / "report.json").read_text())
    assert rep["plot"] is None and not (out / "report.png").exists()
    assert "report.png" not in (out / "report.md").read_text()
    assert all(isinstance(rep["timings"][k], float) for k in PHASES) and "plot_s" not in rep["timings"]
    assert rep["timings"]["total_s"] >= rep["timings"]["calibrate_s"] + rep["timings"]["fit_s"]


def test_cli_with_plot_writes_and_links_the_png(tmp_path):
    child = _cli(tmp_path, "--plot")
    assert child["rc"] == 0 and "matplotlib" in child["heavy"]
    rep = json.loads((tmp_path / "report.json").read_text())
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert rep["plot"].endswith("report.png") and "](report.png)" in (tmp_path / "report.md").read_text()
    assert rep["timings"]["plot_s"] > 0


def test_plot_default_follows_a_loaded_matplotlib(monkeypatch):
    monkeypatch.delitem(sys.modules, "matplotlib", raising=False)
    assert not want_plot(None) and want_plot(True)
    monkeypatch.setitem(sys.modules, "matplotlib", object())
    assert want_plot(None) and not want_plot(False)


@pytest.fixture(scope="module")
def digits_graph():
    g = import_model(DATA / "digits_cnn.onnx")
    return g, open_calibration(DATA / "digits_calib.npz", g.source_shape(g.inputs[0]), g.inputs[0])


@pytest.mark.parametrize("method", ["mse", "percentile", "minmax"])
def test_one_float_run_per_sample_gives_the_same_ranges(digits_graph, method):
    g, data = digits_graph
    kept, again = FloatRuns(g), FloatRuns(g, keep_bytes=0)
    means = InputMeans(g)
    r_kept = calibrate(g, data, method, runs=kept, observers=[means])
    r_again = calibrate(g, data, method, runs=again)
    # every sample remembered: histograms over the final ranges; none remembered: grids that grow with the
    # data. minmax and the MSE search (86 candidate ranges) pick the same; percentiles move by rounding only
    if method == "percentile":
        assert r_kept.keys() == r_again.keys()
        for t, (a, b) in r_kept.items():
            assert abs(r_again[t][0] - a) <= 1e-3 * (b - a) and abs(r_again[t][1] - b) <= 1e-3 * (b - a), t
    else:
        assert r_kept == r_again
    assert kept.count == len(data) and kept.kept == len(data)
    assert again.count == len(data)  # one float run per sample, for every method
    old = input_means(g, kept.session, iter(data))
    new = means.means()
    assert old.keys() == new.keys() and all(np.array_equal(old[t], new[t]) for t in old)
    kept.release(keep_first=5)
    assert kept.kept == 5
    kept.release()
    assert kept.kept == 0


def _strip(rep: dict) -> dict:
    rep = json.loads(json.dumps(rep, default=float))
    for k in ("timings", "outputs", "plot"):
        rep.pop(k, None)
    rep["fit"].pop("model", None)
    return rep


def test_kept_activations_give_the_same_report(tmp_path, monkeypatch):
    x = np.load(ROOT / "tests" / "fixtures" / "digits" / "digits_heldout.npz")["x"][:40]
    a = convert_model(DATA / "digits_cnn.onnx", "rpi4-4gb", DATA / "digits_calib.npz", tmp_path / "a",
                      held_out=x, plot=False)
    monkeypatch.setattr(calibrate_mod, "KEEP_BYTES", 0)  # every step runs the float model again
    b = convert_model(DATA / "digits_cnn.onnx", "rpi4-4gb", DATA / "digits_calib.npz", tmp_path / "b",
                      held_out=x, plot=False)
    assert _strip(a.report) == _strip(b.report)
    assert Path(a.tflite_path).read_bytes() == Path(b.tflite_path).read_bytes()
    assert Path(a.onnx_path).read_bytes() == Path(b.onnx_path).read_bytes()


def test_plot_without_matplotlib_is_one_clear_error(tmp_path, monkeypatch):
    import importlib.util

    from edge_runtime.errors import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    with pytest.raises(ConfigError, match="needs matplotlib"):
        convert_model(DATA / "digits_cnn.onnx", "rpi4-4gb", DATA / "digits_calib.npz", tmp_path, plot=True)
    assert not list(tmp_path.iterdir())  # refused before any work


def test_shipped_profile_cache_is_current_and_reads_as_the_validated_profile():
    """``device_profiles/_shipped_data.py`` matches the YAML files (else: python -m device_profiles.shipped),
    and each shipped profile read from it equals the validated one, field by field."""
    from device_profiles import BOARDS_DIR, DeviceProfile, load_profile, load_profile_file, profile_names
    from device_profiles.shipped import DATA_FILE, ProfileView, build_data

    assert DATA_FILE.read_text() == build_data()
    for name in profile_names():
        view, full = load_profile(name), load_profile_file(BOARDS_DIR / f"{name}.yaml")
        assert type(view) is ProfileView and isinstance(view, DeviceProfile)
        assert view == full and full == view and view.model_dump() == full.model_dump()
        for field in DeviceProfile.model_fields:
            got, want = getattr(view, field), getattr(full, field)
            if field == "cpu":
                assert {k: getattr(got, k) for k in type(want).model_fields} == want.model_dump()
            elif field == "accelerators":
                assert [{k: getattr(g, k) for k in type(w).model_fields} for g, w in zip(got, want)] == \
                    [w.model_dump() for w in want] and len(got) == len(want)
            else:
                assert got == want, (name, field)
        assert view.accelerator_names == full.accelerator_names
        assert load_profile(view) is view


def test_edited_shipped_profile_is_validated_again(tmp_path, monkeypatch):
    """A YAML file that no longer matches the cache (or a changed schema) is read and validated."""
    import device_profiles.shipped as shipped
    from device_profiles import BOARDS_DIR, load_profile

    assert shipped.shipped_view("rpi5") is not None
    (tmp_path / "rpi5.yaml").write_text((BOARDS_DIR / "rpi5.yaml").read_text() + "\n# edited\n")
    monkeypatch.setattr(shipped, "BOARDS_DIR", tmp_path)
    assert shipped.shipped_view("rpi5") is None
    monkeypatch.setattr(shipped, "BOARDS_DIR", BOARDS_DIR)
    monkeypatch.setattr(shipped, "SCHEMA_FILE", tmp_path / "rpi5.yaml")
    assert shipped.shipped_view("rpi5") is None
    prof = load_profile("rpi5")  # falls back to reading and validating the YAML file
    assert type(prof).__name__ == "DeviceProfile" and prof.name == "rpi5"


def test_benchmark_children_get_bytecode_like_an_installed_package(tmp_path, monkeypatch):
    from benchmarks.convert_speed import child_env

    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    env = child_env(tmp_path)
    assert "PYTHONDONTWRITEBYTECODE" not in env and env["PYTHONPYCACHEPREFIX"] == str(tmp_path / "pycache")
    assert child_env(tmp_path, bytecode=False)["PYTHONDONTWRITEBYTECODE"] == "1"


def test_fast_calibration_and_report_paths_write_what_the_plain_paths_write(tmp_path, monkeypatch):
    """Background float runs, the folded binning and the blocked, remembering MSE search change no
    written byte and no report figure (the plain paths: serial, ``_histogram``, the MSE search with
    whole-array temporaries and every round computed)."""
    from tests.test_convert_speed_exact import _mse_range_reference

    x = np.load(ROOT / "tests" / "fixtures" / "digits" / "digits_heldout.npz")["x"][:16]
    monkeypatch.setattr(calibrate_mod, "AHEAD_MIN_S", 0.0)  # background runs even for this small model
    fast = convert_model(DATA / "digits_cnn.onnx", "rpi4-4gb", DATA / "digits_calib.npz", tmp_path / "fast",
                         held_out=x, plot=False)

    def serial(fn, items, background=None, workers=1):  # type: ignore[no-untyped-def]
        for item in items:
            yield item, fn(item)

    monkeypatch.setattr(calibrate_mod, "ahead", serial)
    monkeypatch.setattr(histograms_mod, "Binner", lambda size=0: histograms_mod.histogram_counts)

    def reference(hist, edge_lo, edge_hi, lo, hi):  # type: ignore[no-untyped-def]
        assert (edge_lo, edge_hi) == (lo, hi)  # every digits sample is remembered: grids over the final ranges
        return _mse_range_reference(hist, lo, hi)
    monkeypatch.setattr(histograms_mod, "mse_range", reference)
    plain = convert_model(DATA / "digits_cnn.onnx", "rpi4-4gb", DATA / "digits_calib.npz", tmp_path / "plain",
                          held_out=x, plot=False)
    assert _strip(fast.report) == _strip(plain.report)
    assert Path(fast.tflite_path).read_bytes() == Path(plain.tflite_path).read_bytes()
    assert Path(fast.onnx_path).read_bytes() == Path(plain.onnx_path).read_bytes()
    md = [(p / "report.md").read_text() for p in (tmp_path / "fast", tmp_path / "plain")]
    assert md[0].replace(str(tmp_path / "fast"), "") == md[1].replace(str(tmp_path / "plain"), "")
