"""Flash of sparse models on microcontroller profiles: counted dense, as TFLite Micro must hold them.

TFLite Micro has no sparse kernels and no DENSIFY, so a .tflite whose weights are stored sparse
(``edge-convert prune`` writes them for LiteRT and the micro backend) is not a file a TFLM device
can run. For microcontroller profiles :func:`converters.fit.fit_model` counts every sparse tensor's
dense bytes and says to deploy the dense file; Linux profiles count the file as it is. Reference:
the dense file itself (the same model with the weights stored dense), sized by the same function.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from converters.compress.sparse import sparsify_tflite
from converters.fit import fit_model, sparse_weight_tensors, tflm_flash_bytes
from device_profiles import load_profile
from edge_runtime.formats.tflite import TFLiteModel
from tflite_builder import ModelBuilder, T, opts

MCU_PROFILES = ["nrf52840", "stm32h743", "esp32-s3"]


def _pruned_fc_model(path: Path, units: int, depth: int, layers: int, seed: int) -> Path:
    """``layers`` int8 FULLY_CONNECTED layers whose weights have whole 1x16 blocks zeroed (about 60 %)."""
    rng = np.random.default_rng(seed)
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T((1, depth), "int8", scale=0.05, zp=1, name="x"))
    cur, width = x, depth
    for k in range(layers):
        w = rng.integers(-127, 128, (units, width)).astype(np.int8)
        blocks = w.reshape(units, width // 16, 16)
        blocks[rng.random((units, width // 16)) < 0.6] = 0
        wt = sg.tensor(T((units, width), "int8", scale=0.01, zp=0, data=w, name=f"w{k}"))
        b = sg.tensor(T((units,), "int32", scale=0.0005, zp=0,
                        data=rng.integers(-300, 300, units).astype(np.int32), name=f"b{k}"))
        y = sg.tensor(T((1, units), "int8", scale=0.1, zp=-3, name=f"y{k}"))
        sg.op("FULLY_CONNECTED", [cur, wt, b], [y], opts("FullyConnectedOptions"))
        cur, width = y, units
    sg.io([x], [cur])
    return mb.write(path)


@pytest.mark.parametrize("units,depth,layers,seed", [(32, 64, 1, 0), (48, 128, 2, 1), (64, 256, 3, 2)])
def test_sparse_file_is_counted_dense_on_microcontrollers(tmp_path: Path, units: int, depth: int, layers: int,
                                                          seed: int) -> None:
    dense = _pruned_fc_model(tmp_path / "dense.tflite", units, depth, layers, seed)
    sparse = tmp_path / "sparse.tflite"
    rep = sparsify_tflite(dense, sparse)
    assert rep.flash_after < rep.flash_before, "the test model must shrink when stored sparse"
    model = TFLiteModel.open(sparse)
    assert len(sparse_weight_tensors(model)) == layers
    dense_size, sparse_size = dense.stat().st_size, sparse.stat().st_size
    for name in MCU_PROFILES:
        prof = load_profile(name)
        f_sparse, f_dense = fit_model(sparse, prof), fit_model(dense, prof)
        assert f_dense.flash_bytes == dense_size  # a dense file is its size
        assert f_sparse.flash_bytes == tflm_flash_bytes(model, sparse_size) > sparse_size
        # the dense weights are counted; only the sparsity metadata (index vectors) is extra
        stored = sum(int(t.data.size) for t in sparse_weight_tensors(model))
        dense_bytes = sum(t.nbytes for t in sparse_weight_tensors(model))
        assert f_sparse.flash_bytes - sparse_size == dense_bytes - stored
        assert dense_size - 256 <= f_sparse.flash_bytes <= dense_size + (sparse_size - (dense_size - dense_bytes + stored)) + 256
        assert any("deploy the dense .tflite" in a and "TensorFlow Lite Micro" in a for a in f_sparse.advice)
        assert not any("sparse" in a for a in f_dense.advice)
        assert f_sparse.arena_bytes == f_dense.arena_bytes  # the same model to TFLM


def test_linux_profiles_count_the_sparse_file_as_it_is(tmp_path: Path) -> None:
    dense = _pruned_fc_model(tmp_path / "dense.tflite", 48, 128, 2, 5)
    sparse = tmp_path / "sparse.tflite"
    sparsify_tflite(dense, sparse, litert=True)
    f = fit_model(sparse, load_profile("rpi4-4gb"))
    assert f.flash_bytes == sparse.stat().st_size
    assert not any("sparse" in a for a in f.advice)


def test_sparse_file_that_fits_only_when_counted_sparse_does_not_fit_a_microcontroller(tmp_path: Path) -> None:
    """A budget between the sparse and the dense size: the microcontroller verdict follows the dense size."""
    dense = _pruned_fc_model(tmp_path / "dense.tflite", 64, 512, 2, 3)
    sparse = tmp_path / "sparse.tflite"
    sparsify_tflite(dense, sparse)
    prof = load_profile("nrf52840")
    between = (sparse.stat().st_size + dense.stat().st_size) // 2
    tight = prof.model_copy(update={"model_flash_budget_bytes": between})
    f = fit_model(sparse, tight)
    assert not f.fits and f.flash_bytes > between
    assert any("over the flash budget" in a for a in f.advice)


DIGITS = Path(__file__).resolve().parents[1] / "converters" / "data"


def _prune(tmp_path: Path, profile: str, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    from converters.cli import main

    rc = main(["prune", str(DIGITS / "digits_cnn.onnx"), "--sparsity", "0.5", "--calib",
               str(DIGITS / "digits_calib.npz"), "--profile", profile, "-o", str(tmp_path / "out"),
               "--backend", "micro"])
    return rc, capsys.readouterr().out


def test_prune_for_a_microcontroller_names_the_dense_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`edge-convert prune --profile nrf52840`: the deliverable named for the device is the dense file, with
    the flash fit_model gives it (its file size); the sparse file is never the one to deploy on TFLM."""
    rc, out = _prune(tmp_path, "nrf52840", capsys)
    assert rc == 0
    note = next(ln for ln in out.splitlines() if ln.startswith("note: nrf52840 runs TensorFlow Lite Micro"))
    sparse = next((tmp_path / "out").rglob("*_int8_sparse.tflite"))
    dense = sparse.with_name(sparse.name.replace("_int8_sparse", "_int8"))
    assert f"deploy the dense file {dense} (" in note
    assert f"flash {dense.stat().st_size:,} B" in note and dense.stat().st_size > sparse.stat().st_size


def test_prune_exits_3_when_the_dense_file_does_not_fit(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A flash budget between the sparse and the dense file: fits only if the sparse file were deployable."""
    import yaml

    from device_profiles import BOARDS_DIR

    spec = yaml.safe_load((BOARDS_DIR / "nrf52840.yaml").read_text())
    rc, _ = _prune(tmp_path / "probe", "nrf52840", capsys)
    out_dir = tmp_path / "probe" / "out"
    sparse_file = next(out_dir.rglob("*_int8_sparse.tflite"))
    sparse = sparse_file.stat().st_size
    dense = sparse_file.with_name(sparse_file.name.replace("_int8_sparse", "_int8")).stat().st_size
    assert sparse < dense
    spec.update(name="tight-mcu", model_flash_budget_bytes=(sparse + dense) // 2)
    prof = tmp_path / "tight.yaml"
    prof.write_text(yaml.safe_dump(spec))
    rc, out = _prune(tmp_path, str(prof), capsys)
    assert rc == 3
    assert "deploy the dense file" in out
