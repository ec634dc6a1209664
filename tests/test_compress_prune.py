"""Pruning of the float graph (converters/compress/prune.py) on the project's digits CNN.

References: the float digits model in onnxruntime (accuracy on the held-out split) and the
unpruned graph's weights.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from converters.compress.prune import channel_groups, channel_prune, magnitude_prune, prunable_ops, reconstruct
from converters.compress.quality import float_runner, measure, outputs_of
from converters.pipeline import import_model
from edge_runtime.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "converters" / "data" / "digits_cnn.onnx"
HELD = ROOT / "tests" / "fixtures" / "digits" / "digits_heldout.npz"
CALIB = ROOT / "converters" / "data" / "digits_calib.npz"


@pytest.fixture(scope="module")
def graph():
    return import_model(MODEL)


@pytest.fixture(scope="module")
def heldout():
    z = np.load(HELD)
    return z["x"], z["y"]


@pytest.fixture(scope="module")
def refit_x(graph):
    cal = np.load(CALIB)["x"]
    return np.stack([graph.to_ir_layout(graph.inputs[0], c[None]) for c in cal])


def _weights(g):
    return {op.name: g.tensors[op.inputs[1]].data for op in g.ops if op.kind in ("CONV_2D", "FULLY_CONNECTED")}


def test_per_layer_pruning_zeroes_that_fraction_of_each_layer_in_blocks(graph):
    before = {k: v.copy() for k, v in _weights(graph).items()}
    res = magnitude_prune(graph, 0.5, scope="layer", block=16)
    assert {la.name for la in res.layers} == {op.name for op in prunable_ops(graph)}
    for la in res.layers:
        w = res.graph.tensors[next(op for op in res.graph.ops if op.name == la.name).inputs[1]].data
        blocks = w.reshape(w.shape[0], -1, la.block)
        zero_blocks = np.all(blocks == 0, axis=2)
        assert la.block == 16
        assert zero_blocks.sum() == round(0.5 * zero_blocks.size)
        # pruning only zeroes: every non-zero weight is the original one
        orig = before[la.name]
        assert np.array_equal(w[w != 0], orig[w != 0])
        # the kept blocks are the ones with the largest L2 norm
        norms = np.sqrt((orig.reshape(blocks.shape).astype(np.float64) ** 2).sum(axis=2))
        assert norms[~zero_blocks].min() >= norms[zero_blocks].max()
    # the input graph is not modified
    for k, v in _weights(graph).items():
        assert np.array_equal(v, before[k])


def test_global_pruning_reaches_the_overall_sparsity(graph):
    res = magnitude_prune(graph, 0.5, scope="global", block=1)
    assert abs(res.sparsity - 0.5) < 0.01
    per_layer = [la.sparsity for la in res.layers]
    assert max(per_layer) - min(per_layer) > 0.05  # one threshold: layers differ


@pytest.mark.parametrize("kwargs", [{"sparsity": 1.2}, {"sparsity": -0.1}, {"sparsity": 0.5, "scope": "net"},
                                    {"sparsity": 0.5, "block": 0}])
def test_bad_pruning_settings_are_config_errors(graph, kwargs):
    with pytest.raises(ConfigError):
        magnitude_prune(graph, **kwargs)


def test_channel_groups_follow_the_residual_add_and_the_flatten(graph):
    groups = {tuple(sorted(p.name for p in g.producers)): g for g in channel_groups(graph)}
    res_group = groups[("/conv1/Conv", "/pw/Conv")]  # tied by the residual ADD
    assert res_group.prunable and [d.name for d in res_group.depthwise] == ["/dw/Conv"]
    assert sorted(c.name for c, _ in res_group.consumers) == ["/conv3/Conv", "/pw/Conv"]
    conv3 = groups[("/conv3/Conv",)]
    assert conv3.prunable and conv3.consumers[0][1][0] == "NCHW"  # flatten of NCHW order into the FC
    assert not groups[("/fc/Gemm",)].prunable  # the logits are a graph output


def test_structured_pruning_makes_a_smaller_model_that_still_classifies(graph, heldout, refit_x):
    x, y = heldout
    base = measure(outputs_of(float_runner(graph), x), x, y)
    res = channel_prune(graph, 0.25)
    g = res.graph
    assert res.removed_channels == {"/Relu_output_0": 4, "/Relu_3_output_0": 8}
    shapes = {op.name: g.tensors[op.inputs[1]].data.shape for op in g.ops if op.inputs[1:] and
              g.tensors[op.inputs[1]].data is not None}
    assert shapes["/conv1/Conv"] == (12, 3, 3, 1) and shapes["/dw/Conv"] == (1, 3, 3, 12)
    assert shapes["/pw/Conv"] == (12, 1, 1, 12) and shapes["/conv3/Conv"] == (24, 3, 3, 12)
    assert shapes["/fc/Gemm"] == (10, 96)
    n_before = sum(t.data.size for t in graph.tensors.values() if t.data is not None)
    n_after = sum(t.data.size for t in g.tensors.values() if t.data is not None)
    assert n_after < 0.65 * n_before
    # reference: the unpruned float model in onnxruntime; refit on the 64 calibration images
    rec = reconstruct(graph, g, refit_x, kept_outputs=res.kept_outputs)
    after = measure(outputs_of(float_runner(rec), x), x, y)
    assert after.drop_from(base) <= 1.5, (base, after)


def test_refit_keeps_the_sparsity_pattern_and_recovers_accuracy(graph, heldout, refit_x):
    x, y = heldout
    base = measure(outputs_of(float_runner(graph), x), x, y)
    res = magnitude_prune(graph, 0.5, block=16)
    raw = measure(outputs_of(float_runner(res.graph), x), x, y)
    zeros = {k: v == 0 for k, v in _weights(res.graph).items()}
    rec = reconstruct(graph, res.graph, refit_x)
    for k, v in _weights(rec).items():
        assert np.all(v[zeros[k]] == 0)
    fixed = measure(outputs_of(float_runner(rec), x), x, y)
    assert fixed.value > raw.value
    assert fixed.drop_from(base) <= 1.5, (base, raw, fixed)
