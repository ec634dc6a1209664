"""Issue #19, flash cuts of the generated C that change no computation:

- identical constants written once (``converters/codegen/shared.py``): KWS's four pointwise layers
  share one ``er_wstream`` (four copies before);
- the model's own field widths and optional fields (``fields.py``, ``er_config.h``): a model whose
  dimensions exceed 255 gets 16-bit fields and stays bit-exact with micro (itself equal to
  tflite-micro) on the host and the emulated Cortex-M4; KWS gets 8-bit ones, no clamp, batch,
  dilation or row-index fields;
- the layers' packed biases and scale blobs in one array per kind (``cblob.py``), the kernels' wide
  reads past an array's end served by the next one's bytes;
- the runner: statistics as a 16-byte record ending outputs.bin (no text in the image), failures as
  exit statuses (semihosting SYS_EXIT_EXTENDED), a fault named in one line, SysTick on the 1 MHz
  reference clock (one tick per 1,000 instructions under ``-icount shift=0``).
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from converters.codegen.emit import generate_c
from converters.codegen.fields import narrowest
from converters.codegen.outstage import bias_bits, pack_bias
from converters.codegen.shared import SharedConstants
from edge_runtime.formats.tflite import TFLiteModel
from firmware_sim.mcu.runner import CALIB_INSNS, McuRunError, _run_once, build, missing_tools, qemu_command, run
from tests import tflite_builder as tb
from tests.test_mcu_c import need
from tests.test_mcu_ops_breadth import inputs_for, references
from tests.tflite_builder import T, opts


def test_shared_constants_fold_identical_definitions() -> None:
    shared = SharedConstants()
    assert shared.add("op2_wt", "static const er_wstream op2_wt = { buf, f, 5, 42 };\n")
    assert not shared.add("op4_wt", "static const er_wstream op4_wt = { buf, f, 5, 42 };\n")
    assert shared.add("op6_wt", "static const er_wstream op6_wt = { buf, f, 5, 41 };\n")  # differs: kept
    assert shared.rename(".weights = &op4_wt, .x = op4_wtx") == ".weights = &op2_wt, .x = op4_wtx"
    out: list[str] = []
    assert shared.block("op1_p", "er_pool_params", "{ .in_h = 3 }", out) == "op1_p"
    assert shared.block("op3_p", "er_pool_params", "{ .in_h = 3 }", out) == "op1_p"
    assert len(out) == 1


def test_kws_constants_once_and_narrow_fields(mlperf_models: Path, tmp_path: Path) -> None:
    path = mlperf_models / "kws_ref_model.tflite"
    m = generate_c(path, tmp_path / "kws")
    text = (tmp_path / "kws" / "model.c").read_text()
    assert text.count("static const er_wstream ") == 1  # one descriptor for the four pointwise layers
    assert text.count("(const void*)&op2_wt, .w_split = 3") == 4
    assert m["shared_constants"] == {"op4_wt": "op2_wt", "op6_wt": "op2_wt", "op8_wt": "op2_wt"}
    config = (tmp_path / "kws" / "kernels" / "er_config.h").read_text()
    assert "typedef uint8_t er_dim_t;" in config and "typedef int16_t er_ring_t;" in config
    for macro in ("ER_ACT_FIELDS", "ER_BATCH_FIELD", "ER_DIL_FIELDS", "ER_ROWS_FIELD"):
        assert f"#define {macro} 0" in config
    assert ".act_min" not in text and ".dil_h" not in text and ".batches = 1, .in_h" not in text
    # biases: one array; each layer's packed fields, the last layer's 3-byte read tail kept once
    sg = TFLiteModel.open(path).main
    stored, needed = [], []
    for op in sg.operators:
        if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            b = sg.tensors[op.inputs[2]].array().astype(np.int64)
            bits = bias_bits(b)
            stored.append(pack_bias(b, bits).size)  # type: ignore[union-attr]
            needed.append((b.size * bits + 7) // 8)
    expect = sum(needed) + stored[-1] - needed[-1]
    assert f"const uint8_t er_biases[{expect}]" in text and expect == sum(stored) - 9
    assert "static const uint8_t op3_b[" not in text and ".bias = (er_biases + " in text


def _wide_conv(path: Path, width: int, act: int) -> Path:
    """CONV_2D 3x3 SAME on a 2 x ``width`` x 3 input, 4 filters, fused activation ``act``."""
    rng = np.random.default_rng(width)
    w = T((4, 3, 3, 3), "int8", scale=list(rng.uniform(0.002, 0.02, 4)), zp=[0] * 4, axis=0,
          data=rng.integers(-127, 128, size=(4, 3, 3, 3), dtype=np.int8))
    b = T((4,), "int32", scale=[1e-4] * 4, zp=[0] * 4, data=rng.integers(-3000, 3000, 4).astype(np.int32))
    return tb.build(path, "CONV_2D", [T((1, 2, width, 3), "int8", scale=[0.05], zp=[3]), w, b],
                    [T((1, 2, width, 4), "int8", scale=[0.1], zp=[-7])],
                    opts("Conv2DOptions", padding=0, strideW=1, strideH=1, fusedActivationFunction=act))


def test_dimensions_beyond_255_get_wide_fields_and_stay_exact(tmp_path: Path) -> None:
    """A 300-pixel-wide convolution with a RELU6 clamp: 16-bit dimensions, clamp fields kept; host and
    Cortex-M4 builds equal micro, whose outputs equal tflite-micro's."""
    need("host")
    assert narrowest(255, 32767) == ("uint8_t", "int16_t")
    assert narrowest(256, 32768) == ("uint16_t", "int32_t")
    assert narrowest(65536, 0)[0] == "int32_t"
    path = _wide_conv(tmp_path / "wide.tflite", 300, act=3)
    m = generate_c(path, tmp_path / "c")
    assert m["fields"]["er_dim_t"] == "uint16_t" and m["fields"]["ER_ACT_FIELDS"] == 1
    x = inputs_for(path, 6, 1)
    ref = references(path, x)
    assert len(np.unique(ref)) > 3
    for cpu in ["host"] + ([] if missing_tools("cortex-m4") else ["cortex-m4"]):
        res = run(tmp_path / "c", cpu, x)
        assert np.array_equal(res.outputs.reshape(ref.shape), ref), cpu
    narrow = generate_c(_wide_conv(tmp_path / "narrow.tflite", 30, act=0), tmp_path / "n")
    assert narrow["fields"]["er_dim_t"] == "uint8_t" and narrow["fields"]["ER_ACT_FIELDS"] == 0


def _small_project(tmp_path: Path) -> tuple[Path, Path]:
    path = _wide_conv(tmp_path / "small.tflite", 6, act=0)
    generate_c(path, tmp_path / "c")
    return path, tmp_path / "c"


def test_host_runner_writes_the_stats_record_and_exit_statuses(tmp_path: Path) -> None:
    need("host")
    path, project = _small_project(tmp_path)
    exe = build(project, "host")
    x = inputs_for(path, 3, 2)
    work = tmp_path / "w"
    work.mkdir()
    assert subprocess.run([str(exe)], cwd=work, capture_output=True, check=False).returncode == 2  # no inputs.bin
    (work / "inputs.bin").write_bytes(x.tobytes())
    proc = subprocess.run([str(exe)], cwd=work, capture_output=True, check=False)
    assert proc.returncode == 0 and proc.stdout == b""  # the runner prints nothing
    data = (work / "outputs.bin").read_bytes()
    out_bytes = 2 * 6 * 4
    assert len(data) == 3 * out_bytes + 16
    assert np.frombuffer(data[-16:], "<u4").tolist() == [3, 0, 0, 0]  # inputs; no stack or ticks on the host
    y, fields = _run_once([str(exe)], tmp_path / "w", x, out_bytes, 60.0)
    assert fields["inputs"] == 3 and np.array_equal(y.reshape(3, -1), references(path, x).reshape(3, -1))


def test_board_exit_status_fault_and_reference_clock(tmp_path: Path) -> None:
    """On the emulated Cortex-M4: a missing input file ends QEMU with status 2 (SYS_EXIT_EXTENDED's
    subcode), the calibration loop of 20,000,001 instructions takes 20,000 ticks of the 1 MHz
    reference clock, and a fault in the model is one line naming it."""
    need("cortex-m4")
    path, project = _small_project(tmp_path)
    elf = build(project, "cortex-m4")
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run(qemu_command("cortex-m4", elf), cwd=empty, capture_output=True, timeout=60, check=False)
    assert proc.returncode == 2 and proc.stdout == b""
    work = tmp_path / "w"
    work.mkdir()
    x = inputs_for(path, 2, 3)
    _, fields = _run_once(qemu_command("cortex-m4", elf), work, x, 2 * 6 * 4, 60.0)
    assert fields["inputs"] == 2 and abs(fields["calib_ticks"] - (CALIB_INSNS - 1) // 1000) <= 1
    assert 0 < fields["ticks"] < 2 * fields["calib_ticks"] and 0 < fields["stack"] < 4096
    model_c = project / "model.c"
    model_c.write_text(model_c.read_text().replace("void model_invoke(const int8_t* in, int8_t* out) {",
                                                   "void model_invoke(const int8_t* in, int8_t* out) {\n"
                                                   "    __asm volatile(\"udf #0\");", 1))
    with pytest.raises(McuRunError) as err:
        run(project, "cortex-m4", x)
    assert "the program faulted (HardFault) (exit status 4)" in str(err.value)
    assert "\n" not in str(err.value)
