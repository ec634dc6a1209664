"""[HARDEN] A fixed-seed, structure-aware fuzz campaign: 2,000 mutants (field changes, not byte flips).

TFLite mutants (indices, shapes, types, buffers, quantization, option values, opcode/option
pairs, versions, subgraph I/O, buffer sizes, op lists) load and run on micro and litert; ONNX
mutants (attributes, initializers, external-data paths, opsets, shapes) on onnx. Each load runs
in a worker subprocess under a 4 GiB address-space limit. Every outcome must be a successful
run or one clean EdgeRuntimeError: no signal, no traceback, no hang, no allocation past the
limit. ``python -m benchmarks.fuzz_campaign`` runs the 12,000-mutant version.
"""
from __future__ import annotations

from pathlib import Path

import pytest

import fuzz_structure as fz

N_TFLITE = 1700
N_ONNX = 300


def test_structure_aware_campaign(mlperf_models: Path, tmp_path: Path) -> None:
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("onnx")
    from test_fuzz_load import _onnx_seed_model

    seeds = {p.name: p.read_bytes() for p in sorted(mlperf_models.glob("*.tflite"))}
    jobs = fz.make_mutants(seeds, N_TFLITE, N_ONNX, tmp_path, seed=20261205,
                           onnx_seeds={"seed.onnx": _onnx_seed_model()})
    fz.run_campaign(jobs, f"structure-aware fuzz: {N_TFLITE} TFLite + {N_ONNX} ONNX mutants")
