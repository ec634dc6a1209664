"""Which profiles run TensorFlow Lite Micro (:func:`converters.fit.runs_tflite_micro`), and the figures
``edge-convert prune`` reports for them.

References: the profiles' own fields (a microcontroller, or no Python); :func:`converters.fit.fit_model` on the
dense pruned file, which is what a TFLM device holds: the chosen candidate's flash, RAM and verdict must be its
figures, since ``prune`` prints them in its deploy note and its exit-3 message without sizing the file again.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import board_variant

from converters.compress.search import compress_model
from converters.fit import fit_model, runs_tflite_micro
from device_profiles import list_profiles, load_profile
from tflite_builder import ModelBuilder, T, opts

DIGITS = Path(__file__).resolve().parents[1] / "converters" / "data"


def _fc_model(path: Path) -> Path:
    """One int8 FULLY_CONNECTED layer with per-channel weights."""
    rng = np.random.default_rng(0)
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T((1, 32), "int8", scale=0.05, zp=1, name="x"))
    w = sg.tensor(T((8, 32), "int8", scale=np.full(8, 0.01), zp=np.zeros(8, np.int64), axis=0,
                    data=rng.integers(-127, 128, (8, 32)).astype(np.int8), name="w"))
    b = sg.tensor(T((8,), "int32", scale=np.full(8, 0.0005), zp=np.zeros(8, np.int64),
                    data=np.zeros(8, np.int32), name="b"))
    y = sg.tensor(T((1, 8), "int8", scale=0.1, zp=-3, name="y"))
    sg.op("FULLY_CONNECTED", [x, w, b], [y], opts("FullyConnectedOptions"))
    sg.io([x], [y])
    return mb.write(path)


@pytest.mark.parametrize("name", [p.name for p in list_profiles()])
def test_shipped_profiles_size_as_their_runtime(tmp_path: Path, name: str) -> None:
    """A profile runs TFLM exactly when it is a microcontroller or has no Python; fit_model then plans the arena
    as TFLM does (no in-place reuse) and estimates TFLM's persistent data instead of a Linux runtime."""
    prof = load_profile(name)
    tflm = runs_tflite_micro(prof)
    assert tflm == bool(prof.microcontroller or not prof.python)
    f = fit_model(_fc_model(tmp_path / "fc.tflite"), prof)
    assert ("in-place" not in f.arena_planner) == tflm
    assert f.overhead_note.startswith("TFLM persistent data") == tflm


def test_a_board_without_python_runs_tflm() -> None:
    rpi = load_profile("rpi4-4gb")
    assert not runs_tflite_micro(rpi)
    assert runs_tflite_micro(rpi.model_copy(update={"python": False}))
    assert runs_tflite_micro(rpi.model_copy(update={"microcontroller": True}))


@pytest.mark.parametrize("budget", [None, 11000])
def test_chosen_candidate_carries_the_dense_files_figures(tmp_path: Path, budget: int | None) -> None:
    """On a microcontroller profile (nrf52840, and a variant whose flash budget the dense file exceeds) the chosen
    candidate's flash, RAM and fit are fit_model's on the dense pruned file, which is the file to deploy."""
    profile = "nrf52840" if budget is None else str(board_variant(tmp_path, "nrf52840", "nrf-tight",
                                                                  model_flash_budget_bytes=budget))
    res = compress_model(DIGITS / "digits_cnn.onnx", profile, str(DIGITS / "digits_calib.npz"), tmp_path / "out",
                         sparsity=0.5, backend="micro", ridges=(0.03,))
    c = res.chosen
    assert c is not None and c.sparse_path is not None and c.deploy_path == c.tflite_path
    f = fit_model(c.tflite_path, load_profile(profile))
    assert (c.flash_bytes, c.arena_bytes, c.ram_bytes, c.fits) == (f.flash_bytes, f.arena_bytes, f.ram_bytes, f.fits)
    assert c.flash_bytes == Path(c.tflite_path).stat().st_size > Path(c.sparse_path).stat().st_size
    assert c.fits == (budget is None)
