"""Entropy-coded weights in the generated C (``converters/codegen/wcoder.py``, ``wplace.py``,
``kernels/er_rc.h``), issue #19's flash bound.

- Python: the range coder's stream decodes back (the decoder steps as the C does), across parts
  and on edge cases; trained-like (Laplace) weights get smaller; the decode regions chosen in the
  arena overlap no tensor live at the op.
- Host C: random graphs with Laplace weights, coded whole, split (first rows coded, the rest as
  stored) and decoded into the arena or the static buffer: outputs equal micro's, and micro's
  equal tflite-micro's (``np.array_equal``); ``compress_weights="off"`` gives the same outputs with
  no stream; a bad mode is one clear error.
- Emulated Cortex-M4: a split graph bit-exact, and IC's flash within its weights plus code with
  RAM within micro's in-place arena + 4 KB.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from converters.codegen import wplace
from converters.codegen.emit import generate_c
from converters.codegen.memory import plan_c_arena
from converters.codegen.wcoder import Decoder, Encoder, unzigzag, zigzag
from edge_runtime.arena.plan import plan_arena
from edge_runtime.errors import UnsupportedModelError
from edge_runtime.formats.tflite import TFLiteModel
from firmware_sim.mcu.runner import run
from tests import tflite_builder as tb
from tests.test_mcu_requant_scale import _graph, _inputs, _references, need


def test_zigzag_round_trip() -> None:
    v = np.arange(-128, 128, dtype=np.int8)
    z = zigzag(v)
    assert sorted(z.tolist()) == list(range(256))
    assert np.array_equal(unzigzag(z), v)


def test_stream_round_trip() -> None:
    rng = np.random.default_rng(0)
    parts = [np.zeros(0, np.int8), np.full(300, -128, np.int8), np.full(7, 127, np.int8),
             rng.integers(-128, 128, 1000).astype(np.int8),
             np.clip(np.round(rng.laplace(0, 6, 5000)), -128, 127).astype(np.int8), np.array([5], np.int8)]
    enc = Encoder()
    for p in parts:
        enc.weights(p)
    stream = enc.finish()
    dec = Decoder(stream)
    for p in parts:
        assert np.array_equal(dec.weights(p.size), p)
    assert dec.pos == len(stream)  # the decoder reads exactly the stream, never past it
    lap = np.clip(np.round(rng.laplace(0, 10, 20000)), -127, 127).astype(np.int8)
    e = Encoder()
    e.weights(lap)
    assert len(e.finish()) < 0.8 * lap.size  # ~6 bits per weight for this spread


@pytest.mark.parametrize("stem", ["kws_ref_model", "pretrainedResnet_quant"])
def test_arena_gaps_are_free(stem: str, mlperf_models: Path) -> None:
    model = TFLiteModel.open(mlperf_models / f"{stem}.tflite")
    plan = plan_c_arena(model)
    for op in model.main.operators:
        off, size = wplace.free_gap(plan, op.index)
        assert off % 4 == 0 and off + size <= plan.arena_bytes
        for e in plan.tensor_entries():
            if size and e.size and e.first_op <= op.index <= e.last_op:
                assert off + size <= e.offset or e.offset + e.size <= off
        sc = plan.scratch(op.index)
        if sc and size:
            assert off + size <= sc[0] or sc[0] + sc[1] <= off


def _check_host(path: Path, d: Path, seed: int, **kw: object) -> dict:
    manifest = generate_c(path, d, **kw)  # type: ignore[arg-type]
    x = _inputs(path, 10, seed)
    res = run(d, "host", x)
    ref = _references(path, x)
    assert np.array_equal(res.outputs.reshape(ref.shape), ref)
    return manifest


def test_host_coded_split_and_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A small static buffer forces splits: every graph codes layers, whole and split, decoded into
    arena gaps and into the static buffer."""
    need("host")
    monkeypatch.setattr(wplace, "WBUF_BYTES", 512)
    monkeypatch.setattr(wplace, "DECODE_PER_MAC", 1.0)  # small graphs: few uses per weight
    monkeypatch.setattr(wplace, "MIN_USES", 1)
    splits = whole = in_buffer = in_arena = 0
    for seed in range(3):
        path = _graph(tmp_path / f"g{seed}.tflite", seed, laplace=True, big=True)
        m = _check_host(path, tmp_path / f"c{seed}", seed)
        text = (tmp_path / f"c{seed}" / "model.c").read_text()
        coded = m["coded_weights"]
        assert len(coded["ops"]) >= 2 and coded["stream_bytes"] < 0.85 * coded["bytes"]
        assert "er_rc_init(er_wz);" in text and m["constants"]["er_wz"] == "weights"
        splits += text.count(".w_split = 1")
        whole += len(coded["ops"]) - text.count(".w_split = 1")
        in_buffer += text.count("er_rc_decode((int8_t*)er_wbuf")
        in_arena += text.count("er_rc_decode((int8_t*)(er_arena")
    assert splits >= 4 and whole >= 3 and in_buffer >= 3 and in_arena >= 3


def test_host_off_and_bad_mode(tmp_path: Path) -> None:
    need("host")
    path = _graph(tmp_path / "g.tflite", 3, laplace=True, big=True)
    on = _check_host(path, tmp_path / "on", 3)
    off = _check_host(path, tmp_path / "off", 3, compress_weights="off")
    assert on["coded_weights"]["ops"] and not off["coded_weights"]["ops"]
    assert "er_wz" not in (tmp_path / "off" / "model.c").read_text()
    with pytest.raises(UnsupportedModelError, match=r"compress_weights must be one of auto, off, not 'zip'"):
        generate_c(path, tmp_path / "bad", compress_weights="zip")


def test_cortex_m4_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    need("cortex-m4")
    monkeypatch.setattr(wplace, "WBUF_BYTES", 160)
    monkeypatch.setattr(wplace, "DECODE_PER_MAC", 1.0)
    monkeypatch.setattr(wplace, "MIN_USES", 1)
    path = _graph(tmp_path / "g.tflite", 5, laplace=True, big=True)
    generate_c(path, tmp_path / "c")
    assert ".w_split = 1" in (tmp_path / "c" / "model.c").read_text()
    x = _inputs(path, 3, 5)
    res = run(tmp_path / "c", "cortex-m4", x)
    ref = _references(path, x)
    assert np.array_equal(res.outputs.reshape(ref.shape), ref)
    assert res.flash_items.get("libgcc", 0) == 0 and res.flash_items.get("unclassified", 0) == 0


def test_ic_flash_within_weights_plus_code(mlperf_models: Path, tmp_path: Path) -> None:
    """IC on the emulated Cortex-M4: bit-exact with micro; flash <= weights (.tflite) + code (it
    was 1,750 B over before the coded weights and recomputed multipliers); RAM within micro's
    in-place arena + 4 KB."""
    need("cortex-m4")
    path = mlperf_models / "pretrainedResnet_quant.tflite"
    manifest = generate_c(path, tmp_path / "c")
    assert manifest["coded_weights"]["ops"]
    x = _inputs(path, 1, 4)
    res = run(tmp_path / "c", "cortex-m4", x)
    mic = np.stack([o[0] for o in tb.run_micro(path, [[r] for r in x])])
    assert np.array_equal(res.outputs.reshape(mic.shape), mic)
    assert res.flash_bytes == sum(res.flash_items.values())
    assert res.flash_bytes <= res.weight_bytes + res.code_bytes
    assert res.ram_bytes <= plan_arena(TFLiteModel.open(path), in_place=True).arena_bytes + 4096
