"""Turn an in-memory float :class:`~converters.ir.Graph` (a pruned one) into int8 files.

The same steps as :func:`converters.pipeline.convert_model` (calibrate, plan the quantization,
write the .tflite and .onnx, size against the profile), built on that pipeline's public functions
because ``convert_model`` takes a file path. The quality report is left to the caller, which
measures before/after on its own data (:mod:`converters.compress.quality`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from converters.ir import Graph


@dataclass
class GraphConversion:
    """Paths written and the profile fit."""

    tflite_path: str
    onnx_path: Optional[str]
    fit: Any


def convert_graph(graph: Graph, profile: Any, calib: Any, out_dir: "str | os.PathLike[str]",
                  formats: Sequence[str] = ("tflite",), method: str = "auto", io_dtype: Optional[str] = None,
                  limit: Optional[int] = None, name: Optional[str] = None) -> GraphConversion:
    """Calibrate ``graph`` on ``calib`` and write ``<name>_int8.tflite`` (and .onnx) into ``out_dir``."""
    from device_profiles import load_profile

    from converters.calibrate import calibrate, float_session
    from converters.calibration_data import open_calibration
    from converters.fit import fit_model
    from converters.pipeline import per_channel_fc
    from converters.quantize import plan_quantization
    from converters.writers.tflite import write_tflite

    prof = load_profile(profile)
    in_name = graph.inputs[0]
    data = open_calibration(calib, graph.source_shape(in_name), in_name, limit=limit)
    ranges = calibrate(graph, data, method, session=float_session(graph))
    plan = plan_quantization(graph, ranges, io_dtype or prof.io_dtype, per_channel_fc=per_channel_fc(prof))
    out = os.fspath(out_dir)
    os.makedirs(out, exist_ok=True)
    stem = name or graph.name
    tfl = os.path.join(out, f"{stem}_int8.tflite")
    write_tflite(graph, plan, tfl)
    onnx_path = None
    if "onnx" in formats:
        from converters.writers.onnx import write_onnx

        onnx_path = os.path.join(out, f"{stem}_int8.onnx")
        write_onnx(graph, plan, onnx_path)
    return GraphConversion(tfl, onnx_path, fit_model(tfl, prof))


__all__ = ["GraphConversion", "convert_graph"]
