"""Requantization multipliers recomputed in the generated C from the float32 weight scales
(``ER_RQ_SCALE``, ``converters/codegen/requant_scale.py``), issue #19's flash bound.

- Python: the bit packing reads back what it wrote, and the integer recipe gives micro's
  (multiplier, shift) (``per_channel_multipliers``, TFLM's double arithmetic) for every channel of
  random layers it accepts; a layer whose stored multipliers differ from the recipe is refused.
- Host C: random graphs of CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED with many shapes and weight
  scales spanning 1 to 4 binary exponents: outputs equal micro's, and micro's equal tflite-micro's
  (``np.array_equal``), with every layer in the ER_RQ_SCALE layout.
- The kernel's recompute (``er_scale_multiplier``, compiled with gcc) against micro's pairs on 200
  random layers, channel by channel.
- Emulated Cortex-M4: one such graph bit-exact, and KWS's flash itemised: the requantization bytes
  are the packed fields (25 bits per channel) instead of 4 bytes per channel.
"""
from __future__ import annotations

import subprocess
from importlib import resources
from pathlib import Path

import numpy as np

from converters.codegen.emit import generate_c
from converters.codegen.requant_scale import (
    device_multipliers,
    layer_constant,
    pack_fields,
    scale_layout,
    unpack_field,
)
from edge_runtime.backends.micro.kernels.conv import per_channel_multipliers
from firmware_sim.mcu.runner import run
from tests import tflite_builder as tb
from tests.test_mcu_c import need
from tests.test_mcu_ops_breadth import inputs_for as _inputs, references as _references
from tests.tflite_builder import T, opts


class _Ctx:
    def fail(self, why: str) -> ValueError:
        return ValueError(why)


def _random_layer(rng: np.random.Generator, n: int, octaves: float) -> tuple[float, np.ndarray, float]:
    s_in = float(np.float32(rng.uniform(0.001, 0.5)))
    s_w = (rng.uniform(1e-4, 1e-2) * 2.0 ** rng.uniform(0, octaves, n)).astype(np.float32)
    s_out = float(np.float32(rng.uniform(0.001, 0.5)))
    return s_in, s_w, s_out


def test_pack_round_trip() -> None:
    rng = np.random.default_rng(0)
    for width in (23, 24, 25):
        for n in (1, 2, 7, 64, 129):
            fields = rng.integers(0, 1 << width, n)
            blob = pack_fields(fields, width)
            assert [unpack_field(blob, i, width) for i in range(n)] == fields.tolist()


def test_recipe_equals_tflm_multipliers() -> None:
    """Every accepted layer decodes (unpack + integer recipe) to micro's pairs, channel by channel."""
    rng = np.random.default_rng(1)
    accepted = 0
    for _ in range(300):
        n = int(rng.integers(1, 40))
        s_in, s_w, s_out = _random_layer(rng, n, float(rng.uniform(0, 2)))
        m, s = per_channel_multipliers(_Ctx(), s_in, s_w, s_out, n)  # type: ignore[arg-type]
        fit = scale_layout(m, s, s_in, s_w, s_out)
        if fit is None:
            continue
        accepted += 1
        width = 23 + fit.exp_bits
        c = int(fit.blob[0]) | int(fit.blob[1]) << 8 | int(fit.blob[2]) << 16 | fit.c_hi << 24
        assert c == layer_constant(s_in, s_out)
        body = fit.blob[3:]
        fields = np.array([unpack_field(body, i, width) for i in range(n)], np.int64)
        mm, extra = device_multipliers((fields & 0x7FFFFF) | 0x800000, c)
        assert np.array_equal(mm, m)
        assert np.array_equal(fit.base_shift + extra + (fields >> 23), s)
        assert fit.nbytes == 3 + max((n * width + 7) // 8, (n - 1) * width // 8 + 4)
    assert accepted >= 290  # the recipe matched TFLM's double arithmetic on (almost) every layer


def test_mismatch_and_wide_exponents_are_refused() -> None:
    rng = np.random.default_rng(2)
    s_in, s_w, s_out = _random_layer(rng, 16, 1.0)
    m, s = per_channel_multipliers(_Ctx(), s_in, s_w, s_out, 16)  # type: ignore[arg-type]
    assert scale_layout(m, s, s_in, s_w, s_out) is not None
    bad = m.copy()
    bad[5] += 1
    assert scale_layout(bad, s, s_in, s_w, s_out) is None
    wide = s_w.copy()
    wide[3] *= np.float32(64.0)  # exponents span more than four values
    m2, s2 = per_channel_multipliers(_Ctx(), s_in, wide, s_out, 16)  # type: ignore[arg-type]
    assert scale_layout(m2, s2, s_in, wide, s_out) is None


# ------------------------------------------------------------------- generated C, random graphs

def _wt(rng: np.random.Generator, shape: tuple[int, ...], axis: int, octaves: float, laplace: bool = False) -> T:
    n = shape[axis]
    scales = list((rng.uniform(2e-3, 6e-3) * 2.0 ** rng.uniform(0, octaves, n)).astype(np.float32))
    data = (np.clip(np.round(rng.laplace(0, 12, shape)), -127, 127).astype(np.int8) if laplace
            else rng.integers(-127, 128, shape, np.int8))
    return T(shape, "int8", scale=scales, zp=[0] * n, axis=axis, data=data)


def _graph(path: Path, seed: int, laplace: bool = False, big: bool = False) -> Path:
    """CONV_2D -> DEPTHWISE_CONV_2D -> CONV_2D 1x1 -> FULLY_CONNECTED with random shapes and scales
    (``laplace``: weights drawn from a Laplace distribution, as trained weights are: compressible;
    ``big``: wider layers)."""
    rng = np.random.default_rng(seed)
    mb = tb.ModelBuilder()
    sg = mb.subgraph("main")
    h, w, cin = (int(v) for v in rng.integers(4, 10, 3))
    c1, mult, c3, units = int(rng.integers(6, 20)), int(rng.integers(1, 3)), int(rng.integers(6, 24)), int(
        rng.integers(6, 12))
    kh, kw, stride = int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(1, 3))
    octaves = float(rng.uniform(0.3, 2.0))
    if big:
        c1, c3 = 4 * c1, 2 * c3

    def act(shape: tuple[int, ...], scale: float) -> int:
        return sg.tensor(T(shape, "int8", scale=[float(scale)], zp=[int(rng.integers(-10, 11))]))

    def bias(n: int) -> int:
        return sg.tensor(T((n,), "int32", scale=[1e-4] * n, zp=[0] * n,
                           data=rng.integers(-4000, 4000, n).astype(np.int32)))

    x = act((1, h, w, cin), 0.05)
    ho, wo = (h + stride - 1) // stride, (w + stride - 1) // stride  # SAME padding
    y1 = act((1, ho, wo, c1), 0.05 * 0.006 * 127 * np.sqrt(kh * kw * cin) / 6)
    sg.op("CONV_2D", [x, sg.tensor(_wt(rng, (c1, kh, kw, cin), 0, octaves, laplace)), bias(c1)], [y1],
          opts("Conv2DOptions", padding=0, strideW=stride, strideH=stride, fusedActivationFunction=1))
    y2 = act((1, ho, wo, c1 * mult), 0.05)
    wd = sg.tensor(_wt(rng, (1, 3, 3, c1 * mult), 3, octaves, laplace))
    sg.op("DEPTHWISE_CONV_2D", [y1, wd, bias(c1 * mult)], [y2],
          opts("DepthwiseConv2DOptions", padding=0, strideW=1, strideH=1, depthMultiplier=mult, dilationWFactor=1,
               dilationHFactor=1))
    y3 = act((1, ho, wo, c3), 0.08)
    sg.op("CONV_2D", [y2, sg.tensor(_wt(rng, (c3, 1, 1, c1 * mult), 0, octaves, laplace)), bias(c3)], [y3],
          opts("Conv2DOptions", padding=1, strideW=1, strideH=1))
    flat = ho * wo * c3
    y4 = sg.tensor(T((1, flat), "int8", scale=[0.08], zp=[0]))
    sg.op("RESHAPE", [y3, sg.tensor(T((2,), "int32", data=np.array([1, flat], np.int32)))], [y4])
    y5 = act((1, units), 0.3)
    sg.op("FULLY_CONNECTED", [y4, sg.tensor(_wt(rng, (units, flat), 0, octaves, laplace)), bias(units)], [y5],
          opts("FullyConnectedOptions", fusedActivationFunction=0))
    sg.io([x], [y5])
    return mb.write(path)


def test_host_equals_micro_and_tflm(tmp_path: Path) -> None:
    need("host")
    for seed in range(4):
        path = _graph(tmp_path / f"g{seed}.tflite", seed)
        d = tmp_path / f"c{seed}"
        generate_c(path, d)
        model_c = (d / "model.c").read_text()
        assert model_c.count(".rq_kind = ER_RQ_SCALE") == 4, seed  # every layer recomputes its multipliers
        x = _inputs(path, 12, seed)
        res = run(d, "host", x)
        ref = _references(path, x)
        assert np.array_equal(res.outputs.reshape(ref.shape), ref), seed
        assert len(np.unique(ref)) > 3  # not a saturated, constant output


def test_cortex_m4_graph(tmp_path: Path) -> None:
    need("cortex-m4")
    path = _graph(tmp_path / "g.tflite", 7)
    generate_c(path, tmp_path / "c")
    x = _inputs(path, 4, 7)
    res = run(tmp_path / "c", "cortex-m4", x)
    ref = _references(path, x)
    assert np.array_equal(res.outputs.reshape(ref.shape), ref)
    assert res.flash_items.get("libgcc", 0) == 0 and res.flash_items.get("unclassified", 0) == 0


def test_kws_flash_accounting(mlperf_models: Path, tmp_path: Path) -> None:
    """KWS on the emulated Cortex-M4: bit-exact with micro, and its requantization constants are
    the packed scale fields (9 layers x 64 channels, 23 + 1..2 bits each) instead of 2,304 bytes."""
    need("cortex-m4")
    path = mlperf_models / "kws_ref_model.tflite"
    manifest = generate_c(path, tmp_path / "c")
    rq = [k for k, v in manifest["constants"].items() if v == "requantization"]
    assert rq == ["er_rqs"]  # the nine layers' scale blobs in one array (converters/codegen/cblob.py)
    assert (tmp_path / "c" / "model.c").read_text().count(".rq = (er_rqs + ") == 9
    x = _inputs(path, 2, 3)
    res = run(tmp_path / "c", "cortex-m4", x)
    mic = np.stack([o[0] for o in tb.run_micro(path, [[r] for r in x])])
    assert np.array_equal(res.outputs.reshape(mic.shape), mic)
    items = res.flash_items
    assert res.flash_bytes == sum(items.values())
    assert 9 * (3 + 64 * 24 // 8) <= items["requantization"] <= 9 * (3 + 64 * 25 // 8 + 4) + 9 * 3
    assert items["requantization"] < 2304 - 400


def test_c_recipe_equals_tflm_multipliers(tmp_path: Path) -> None:
    """The kernel's ``er_scale_multiplier`` (er_layer.h, compiled with gcc) gives micro's (multiplier,
    shift) for every channel of 200 random layers in the ER_RQ_SCALE layout."""
    need("host")
    rng = np.random.default_rng(4)
    layers, expect = [], []
    while len(layers) < 200:
        n = int(rng.integers(1, 70))
        s_in, s_w, s_out = _random_layer(rng, n, float(rng.uniform(0, 2.5)))
        m, s = per_channel_multipliers(_Ctx(), s_in, s_w, s_out, n)  # type: ignore[arg-type]
        fit = scale_layout(m, s, s_in, s_w, s_out)
        if fit is not None:
            layers.append((fit, n))
            expect += [f"{int(a)} {int(b)}" for a, b in zip(m, s)]
    src = ['#include <stdio.h>', '#include "er_layer.h"']
    for i, (fit, _) in enumerate(layers):
        src.append(f"static const uint8_t b{i}[] = {{ {', '.join(str(int(v)) for v in fit.blob)} }};")
    src.append("int main(void) {\n    er_out_stage s;\n    int32_t c, sh, m;")
    for i, (fit, n) in enumerate(layers):
        src.append(f"    s.rq = b{i}; s.mult = {fit.c_hi_i32}; s.channels = {fit.exp_bits}; s.shift = {fit.base_shift};"
                   f" s.rq_kind = ER_RQ_SCALE;\n"
                   f"    for (c = 0; c < {n}; ++c) {{ sh = s.shift; m = er_scale_multiplier(&s, c, &sh);"
                   f" printf(\"%ld %ld\\n\", (long)m, (long)sh); }}")
    src.append("    return 0;\n}\n")
    (tmp_path / "t.c").write_text("\n".join(src))
    kernels = Path(str(resources.files("converters.codegen") / "kernels"))
    subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Werror", f"-I{kernels}", "t.c", "-o", "t"], cwd=tmp_path,
                   check=True)
    out = subprocess.run([str(tmp_path / "t")], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:-1] == expect
