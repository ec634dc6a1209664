"""Generated C (``edge-convert export --format c``) against the micro backend, bit for bit.

Host build (gcc): the five MLPerf Tiny int8 models with 100 random inputs each, plus one-op models
for kernels and options the five do not use (MAX_POOL_2D, broadcasting ADD and SUB, MUL, dilation,
depth multiplier, per-channel FULLY_CONNECTED, the table-driven elementwise ops, all-zero filters
and the three layouts of the requantization constants). Emulated Cortex-M4 and Cortex-M7
(qemu-system-arm): the five models with 20 inputs each (the benchmark
``python -m benchmarks.mcu_footprint --inputs 100`` runs the full 100), with the RAM and flash
figures from the linker output checked against the plan and the flash itemised from the map file.

Tests skip when gcc / arm-none-eabi-gcc / qemu-system-arm are missing, except under CI=true.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from converters.codegen.emit import generate_c
from converters.codegen.memory import ring_plan
from edge_runtime.arena.plan import plan_arena
from edge_runtime.backends.micro.interpreter import Interpreter
from edge_runtime.errors import UnsupportedModelError
from edge_runtime.formats.tflite import TFLiteModel
from firmware_sim.mcu.runner import missing_tools, run
from tests import tflite_builder as tb
from tests.tflite_builder import T, opts

MODELS = ["kws_ref_model", "vww_96_int8", "pretrainedResnet_quant", "ad01_int8", "str_ww_ref_model"]
HOST_INPUTS = 100
QEMU_INPUTS = 20
#: models whose flash is within their weights (as in the .tflite) plus code: VWW through its
#: all-zero filters (not stored), AD through narrower biases, IC and SWW through range-coded weights and
#: multipliers rebuilt from packed weight scales (see the README's MCU section); KWS is not (yet)
WITHIN_WEIGHTS_PLUS_CODE = {"kws_ref_model", "vww_96_int8", "ad01_int8", "pretrainedResnet_quant", "str_ww_ref_model"}


def need(cpu: str) -> None:
    """Skip (or fail under CI=true) when the toolchain for ``cpu`` is missing."""
    missing = missing_tools(cpu)
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{', '.join(missing)} missing and CI=true: scripts/setup.sh installs them")
        pytest.skip(f"{', '.join(missing)} not installed (scripts/setup.sh installs them)")


def micro_outputs(path: Path, x: np.ndarray) -> np.ndarray:
    """The micro backend's outputs for every input of ``x``."""
    it = Interpreter(TFLiteModel.open(path))
    out = []
    for row in x:
        it.set_input(0, row)
        it.invoke()
        out.append(it.output(0).copy())
    return np.stack(out)


def inputs_for(path: Path, n: int, seed: int = 0) -> np.ndarray:
    """``n`` random int8 inputs of the model's input shape."""
    m = TFLiteModel.open(path)
    shape = m.main.tensors[m.main.inputs[0]].shape
    return np.random.default_rng(seed).integers(-128, 128, size=(n,) + tuple(shape), dtype=np.int8)


@pytest.fixture(scope="module")
def projects(mlperf_models: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One generated project per MLPerf Tiny model."""
    root = tmp_path_factory.mktemp("mcu_c")
    out = {}
    for stem in MODELS:
        generate_c(mlperf_models / f"{stem}.tflite", root / stem)
        out[stem] = root / stem
    return out


@pytest.mark.parametrize("stem", MODELS)
def test_host_bit_exact(stem: str, projects: dict[str, Path], mlperf_models: Path) -> None:
    need("host")
    path = mlperf_models / f"{stem}.tflite"
    x = inputs_for(path, HOST_INPUTS)
    res = run(projects[stem], "host", x)
    ref = micro_outputs(path, x)
    assert res.inputs == HOST_INPUTS
    assert np.array_equal(res.outputs.reshape(ref.shape), ref)


@pytest.mark.parametrize("cpu", ["cortex-m4", "cortex-m7"])
@pytest.mark.parametrize("stem", MODELS)
def test_qemu_bit_exact_and_footprint(stem: str, cpu: str, projects: dict[str, Path], mlperf_models: Path) -> None:
    need(cpu)
    path = mlperf_models / f"{stem}.tflite"
    x = inputs_for(path, QEMU_INPUTS, seed=1)
    res = run(projects[stem], cpu, x)
    ref = micro_outputs(path, x)
    assert np.array_equal(res.outputs.reshape(ref.shape), ref)
    assert res.inputs == QEMU_INPUTS
    # RAM: the static arena dominates; runner statics and the measured stack stay under 4 KB.
    assert res.bss_bytes >= res.arena_bytes
    assert 0 < res.stack_bytes < 4096
    assert res.ram_bytes <= res.arena_bytes + 4096
    model = TFLiteModel.open(path)
    assert res.ram_bytes <= plan_arena(model, in_place=True).arena_bytes + 4096  # micro's in-place plan
    # Flash, itemised from the map file: every byte is stored weights, code (.text) or other flash.
    items = res.flash_items
    assert res.flash_bytes == sum(items.values())
    assert res.flash_bytes == res.stored_weight_bytes + res.code_bytes + res.other_flash_bytes
    assert items.get("unclassified", 0) == 0 and items.get("libgcc", 0) == 0
    assert res.stored_weight_bytes <= res.weight_bytes
    # Flash beyond weights plus code: at most the requantization constants (int32 multiplier and
    # int8 shift per output channel at worst), which the .tflite stores as float scales, plus 1 KB
    # of parameter blocks, vector table and runner strings.
    assert items.get("requantization", 0) <= _requant_bytes(model)
    assert res.flash_bytes <= res.weight_bytes + res.code_bytes + _requant_bytes(model) + 1024
    if stem in WITHIN_WEIGHTS_PLUS_CODE:
        assert res.flash_bytes <= res.weight_bytes + res.code_bytes
    assert res.instructions_per_inference is not None and res.instructions_per_inference > 10_000


def test_runner_cli_json(projects: dict[str, Path], mlperf_models: Path, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m firmware_sim.mcu run``: writes the outputs, the last line is the JSON summary."""
    need("host")
    from firmware_sim.mcu.__main__ import main

    path = mlperf_models / "kws_ref_model.tflite"
    x = inputs_for(path, 4, seed=9)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(projects["kws_ref_model"]), "--cpu", "host", "--input", str(tmp_path / "x.npy"),
                 "--output", str(tmp_path / "y.npy")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["inputs"] == 4 and summary["arena_bytes"] > 0
    assert np.array_equal(np.load(tmp_path / "y.npy").reshape(4, -1), micro_outputs(path, x).reshape(4, -1))
    assert main(["run", str(tmp_path), "--cpu", "host", "--input", str(tmp_path / "x.npy"),
                 "--output", str(tmp_path / "z.npy")]) == 1
    assert "not a generated C project" in capsys.readouterr().err


def _requant_bytes(model: TFLiteModel) -> int:
    sg = model.main
    total = 0
    for op in sg.operators:
        if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            total += 5 * sg.tensors[op.outputs[0]].shape[-1]
    return total


def test_generated_c_is_freestanding(projects: dict[str, Path]) -> None:
    """model.c and the kernels: strict C99, and no library symbols beyond memcpy/memset."""
    need("host")
    project = projects["pretrainedResnet_quant"]  # conv, add, pool, fc, softmax, reshape
    srcs = ["model.c"] + sorted(str(p.relative_to(project)) for p in (project / "kernels").glob("*.c"))
    undefined: set[str] = set()
    for src in srcs:
        obj = project / (Path(src).stem + ".o")
        subprocess.run(["gcc", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-O2", "-Ikernels",
                        "-ffreestanding", "-c", src, "-o", str(obj)], cwd=project, check=True)
        nm = subprocess.run(["nm", "-u", str(obj)], capture_output=True, text=True, check=True).stdout
        undefined |= {line.split()[-1] for line in nm.splitlines() if line.strip()}
    defined = {"er_conv_s8", "er_depthwise_conv_s8", "er_fully_connected_s8", "er_average_pool_s8",
               "er_max_pool_s8", "er_add_s8", "er_sub_s8", "er_mul_s8", "er_softmax_s8", "er_lookup_s8",
               "er_conv_shapes"}  # the convolutions' shared geometries, a table of model.c
    model_defs = subprocess.run(["nm", "--defined-only", str(project / "model.o")], capture_output=True, text=True,
                                check=True).stdout
    assert "er_conv_shapes" in {line.split()[-1] for line in model_defs.splitlines() if line.strip()}
    assert undefined - defined <= {"memcpy", "memset"}
    text = "".join((project / s).read_text() for s in srcs)
    for banned in ("malloc", "free(", "printf", "float ", "double "):
        assert banned not in text


def test_in_place_runs_both_ways(mlperf_models: Path) -> None:
    """VWW's expanding 1x1 convolutions run in place backward, its stride-2 ones forward."""
    m = TFLiteModel.open(mlperf_models / "vww_96_int8.tflite")
    dirs = {ring_plan(m, op)[1] for op in m.main.operators if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D")}
    assert dirs == {1, -1}


# ---------------------------------------------------------------- one-op models (host build)

def _q(shape: tuple[int, ...], scale: float = 0.05, zp: int = 3) -> T:
    return T(shape, "int8", scale=[scale], zp=[zp])


def _w(rng: np.random.Generator, shape: tuple[int, ...], per_channel: int, axis: int) -> T:
    scales = list(rng.uniform(0.002, 0.02, per_channel))
    return T(shape, "int8", scale=scales, zp=[0] * per_channel, axis=axis,
             data=rng.integers(-127, 128, size=shape, dtype=np.int8))


def _bias(rng: np.random.Generator, n: int) -> T:
    return T((n,), "int32", scale=[1e-4] * n, zp=[0] * n, data=rng.integers(-3000, 3000, n).astype(np.int32))


def _one_op_models(d: Path) -> dict[str, Path]:
    rng = np.random.default_rng(5)
    models = {}
    models["max_pool_same_relu6"] = tb.build(
        d / "maxpool.tflite", "MAX_POOL_2D", [_q((1, 9, 7, 5))], [_q((1, 5, 4, 5))],
        opts("Pool2DOptions", padding=0, strideW=2, strideH=2, filterWidth=3, filterHeight=3,
             fusedActivationFunction=3))
    models["avg_pool_valid"] = tb.build(
        d / "avgpool.tflite", "AVERAGE_POOL_2D", [_q((1, 8, 8, 3))], [_q((1, 3, 3, 3))],
        opts("Pool2DOptions", padding=1, strideW=2, strideH=2, filterWidth=3, filterHeight=3))
    models["add_broadcast_relu"] = tb.build(
        d / "add.tflite", "ADD", [_q((1, 4, 5, 6), 0.07, -5),
                                  T((1, 1, 5, 1), "int8", scale=[0.03], zp=[10],
                                    data=rng.integers(-128, 128, (1, 1, 5, 1), dtype=np.int8))],
        [_q((1, 4, 5, 6), 0.09, 2)],
        opts("AddOptions", fusedActivationFunction=1))
    models["sub_broadcast"] = tb.build(
        d / "sub.tflite", "SUB", [_q((2, 3, 4), 0.05, 7),
                                  T((3, 1), "int8", scale=[0.08], zp=[-4],
                                    data=rng.integers(-128, 128, (3, 1), dtype=np.int8))],
        [_q((2, 3, 4), 0.1, -1)], opts("SubOptions", fusedActivationFunction=0))
    models["mul_same_shape_relu6"] = tb.build(
        d / "mul.tflite", "MUL", [_q((1, 6, 5), 0.04, -9),
                                  T((1, 6, 5), "int8", scale=[0.06], zp=[2],
                                    data=rng.integers(-128, 128, (1, 6, 5), dtype=np.int8))],
        [_q((1, 6, 5), 0.02, -20)], opts("MulOptions", fusedActivationFunction=3))
    for op, out_q, o in (("RELU6", (0.06, 5), None), ("LOGISTIC", (1 / 256, -128), None),
                         ("TANH", (1 / 128, 0), None), ("QUANTIZE", (0.11, 9), None),
                         ("LEAKY_RELU", (0.04, -3), opts("LeakyReluOptions", alpha=0.2)),
                         ("HARD_SWISH", (0.02, -60), None)):
        models[op.lower()] = tb.build(d / f"{op.lower()}.tflite", op, [_q((1, 7, 9), 0.06, 5)],
                                      [_q((1, 7, 9), *out_q)], o)
    models["conv_dilated"] = tb.build(
        d / "conv.tflite", "CONV_2D", [_q((1, 10, 9, 4))] + [_w(rng, (6, 3, 3, 4), 6, 0), _bias(rng, 6)],
        [_q((1, 10, 9, 6), 0.3, -7)],
        opts("Conv2DOptions", padding=0, strideW=1, strideH=1, dilationWFactor=2, dilationHFactor=2))
    models["depthwise_mult2"] = tb.build(
        d / "dw.tflite", "DEPTHWISE_CONV_2D", [_q((1, 7, 7, 3))] + [_w(rng, (1, 3, 3, 6), 6, 3), _bias(rng, 6)],
        [_q((1, 4, 4, 6), 0.2, 1)],
        opts("DepthwiseConv2DOptions", padding=0, strideW=2, strideH=2, depthMultiplier=2, dilationWFactor=1,
             dilationHFactor=1))
    models["fc_per_channel_batch3"] = tb.build(
        d / "fc.tflite", "FULLY_CONNECTED", [_q((3, 16))] + [_w(rng, (5, 16), 5, 0), _bias(rng, 5)],
        [_q((3, 5), 0.1, -3)], opts("FullyConnectedOptions", fusedActivationFunction=0))
    return models


@pytest.fixture(scope="module")
def one_op_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _one_op_models(tmp_path_factory.mktemp("one_op"))


@pytest.mark.parametrize("name", ["max_pool_same_relu6", "avg_pool_valid", "add_broadcast_relu", "sub_broadcast",
                                  "mul_same_shape_relu6", "conv_dilated", "depthwise_mult2",
                                  "fc_per_channel_batch3", "relu6", "logistic", "tanh", "quantize",
                                  "leaky_relu", "hard_swish"])
def test_one_op_host_bit_exact(name: str, one_op_models: dict[str, Path], tmp_path: Path) -> None:
    need("host")
    path = one_op_models[name]
    generate_c(path, tmp_path / "c")
    x = inputs_for(path, 50, seed=2)
    res = run(tmp_path / "c", "host", x)
    ref = micro_outputs(path, x)
    assert np.array_equal(res.outputs.reshape(ref.shape), ref)


def test_unsupported_op_is_refused(tmp_path: Path) -> None:
    path = tb.build(tmp_path / "l2.tflite", "L2_NORMALIZATION", [_q((1, 8))], [_q((1, 8), 1 / 128, 0)])
    with pytest.raises(UnsupportedModelError, match=r"op L2_NORMALIZATION .* is not supported by the C generator "
                                                    r"yet; "
                                                    r"supported: .*CONV_2D"):
        generate_c(path, tmp_path / "c")


def test_size_optimised_build(projects: dict[str, Path], mlperf_models: Path) -> None:
    """``opt="-Os"`` builds in its own directory: bit-exact, with less code than the -O2 build."""
    need("cortex-m4")
    path = mlperf_models / "kws_ref_model.tflite"
    x = inputs_for(path, 3, seed=4)
    small = run(projects["kws_ref_model"], "cortex-m4", x, opt="-Os")
    fast = run(projects["kws_ref_model"], "cortex-m4", x)
    assert "build-Os" in small.elf and small.opt == "-Os"
    assert np.array_equal(small.outputs, fast.outputs)
    assert np.array_equal(fast.outputs.reshape(3, -1), micro_outputs(path, x).reshape(3, -1))
    assert small.code_bytes < fast.code_bytes and small.flash_bytes < fast.flash_bytes


def _sparse_filter_models(d: Path) -> dict[str, Path]:
    """Layers with all-zero filters (whose output is the requantized bias alone) and per-channel
    scales spread so wide that the shifts do not pack."""
    rng = np.random.default_rng(11)
    models = {}
    w = rng.integers(-127, 128, size=(8, 3, 3, 4), dtype=np.int8)
    w[[1, 4, 5]] = 0
    scales = list(np.geomspace(1e-7, 2e-2, 8))
    bias = rng.integers(-3000, 3000, 8).astype(np.int32)
    bias[[1, 4]] = [400_000, -90_000]  # dead channels with biases far outside int16
    models["conv_dead_filters_wide_shifts"] = tb.build(
        d / "conv_dead.tflite", "CONV_2D",
        [_q((1, 6, 5, 4))] + [T((8, 3, 3, 4), "int8", scale=scales, zp=[0] * 8, axis=0, data=w),
                              T((8,), "int32", scale=[1e-4] * 8, zp=[0] * 8, data=bias)],
        [_q((1, 6, 5, 8), 0.05, -7)], opts("Conv2DOptions", padding=0, strideW=1, strideH=1))
    w2 = rng.integers(-127, 128, size=(8, 3, 3, 4), dtype=np.int8)
    w2[[0, 3, 6, 7]] = 0
    bias2 = rng.integers(-3000, 3000, 8).astype(np.int32)
    bias2[[3, 7]] = [-40_000, 60_000]  # beyond int16, outputs in range
    models["conv_dead_filters_packed"] = tb.build(
        d / "conv_dead2.tflite", "CONV_2D",
        [_q((1, 6, 5, 4))] + [T((8, 3, 3, 4), "int8", scale=list(rng.uniform(0.004, 0.01, 8)), zp=[0] * 8,
                                axis=0, data=w2),
                              T((8,), "int32", scale=[1e-4] * 8, zp=[0] * 8, data=bias2)],
        [_q((1, 6, 3, 8), 0.3, 4)], opts("Conv2DOptions", padding=0, strideW=2, strideH=1))
    wd = rng.integers(-127, 128, size=(1, 3, 3, 6), dtype=np.int8)
    wd[..., 2] = 0
    models["depthwise_dead_channel"] = tb.build(
        d / "dw_dead.tflite", "DEPTHWISE_CONV_2D",
        [_q((1, 7, 7, 3))] + [T((1, 3, 3, 6), "int8", scale=list(rng.uniform(0.005, 0.02, 6)), zp=[0] * 6,
                                axis=3, data=wd), _bias(rng, 6)],
        [_q((1, 7, 7, 6), 0.2, 1)],
        opts("DepthwiseConv2DOptions", padding=0, strideW=1, strideH=1, depthMultiplier=2, dilationWFactor=1,
             dilationHFactor=1))
    wf = rng.integers(-127, 128, size=(5, 16), dtype=np.int8)
    wf[2] = 0
    models["fc_dead_row"] = tb.build(
        d / "fc_dead.tflite", "FULLY_CONNECTED",
        [_q((2, 16))] + [T((5, 16), "int8", scale=list(rng.uniform(0.005, 0.02, 5)), zp=[0] * 5, axis=0, data=wf),
                         _bias(rng, 5)],
        [_q((2, 5), 0.1, -3)], opts("FullyConnectedOptions", fusedActivationFunction=1))
    return models


@pytest.mark.parametrize("name", ["conv_dead_filters_wide_shifts", "conv_dead_filters_packed",
                                  "depthwise_dead_channel", "fc_dead_row"])
def test_all_zero_filters_and_requant_layouts(name: str, tmp_path: Path) -> None:
    """All-zero filters are not stored (CONV_2D) and their channels take the layer's packed
    requantization; the outputs stay equal to micro's on the host build."""
    need("host")
    path = _sparse_filter_models(tmp_path)[name]
    manifest = generate_c(path, tmp_path / "c")
    model_c = (tmp_path / "c" / "model.c").read_text()
    if name.startswith("conv_dead"):
        assert "op0_rows" in manifest["constants"]
        assert manifest["constants"]["op0_rows"] == "row index"
    layout = {"conv_dead_filters_wide_shifts": "ER_RQ_SPLIT", "conv_dead_filters_packed": "ER_RQ_PACKED",
              "depthwise_dead_channel": "ER_RQ_PACKED", "fc_dead_row": "ER_RQ_PACKED"}[name]
    assert f".rq_kind = {layout}" in model_c
    if name == "conv_dead_filters_packed":
        # the dead channels' int32 biases are not kept: the layer's biases pack into at most 16 bits
        width = re.search(r"\.bias_bytes = (\d+)", model_c)
        assert width and int(width.group(1)) & 0x80 and int(width.group(1)) & 31 <= 16
    x = inputs_for(path, 50, seed=6)
    res = run(tmp_path / "c", "host", x)
    assert np.array_equal(res.outputs.reshape(len(x), -1), micro_outputs(path, x).reshape(len(x), -1))


def test_parameter_overflow_is_refused(tmp_path: Path) -> None:
    """A parameter beyond its narrow C field type is one clear error line, not a wrong program."""
    path = tb.build(tmp_path / "pool.tflite", "AVERAGE_POOL_2D", [_q((1, 1, 300, 2))], [_q((1, 1, 1, 2))],
                    opts("Pool2DOptions", padding=1, strideW=1, strideH=1, filterWidth=300, filterHeight=1))
    with pytest.raises(UnsupportedModelError, match=r"op AVERAGE_POOL_2D \(op 0\): k_w = 300 does not fit the "
                                                    r"C generator's uint8_t field"):
        generate_c(path, tmp_path / "c")
