"""ONNX Runtime's own int8 quantizer, the baseline the benchmarks and the zoo tests measure us against.

One call of ``onnxruntime.quantization.quantize_static`` as every comparison here runs it: QDQ format, int8
activations and weights, MinMax calibration (ORT's default), per-channel weights, the calibration samples
fed one at a time to the model's input.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def quantize_static_qdq(src: str, out: str, input_name: str, calib: Sequence[np.ndarray],
                        per_tensor_fallback: bool = False) -> str:
    """Write ORT's ``quantize_static`` of the ONNX model ``src`` to ``out``, calibrated on ``calib`` (each item
    one feed of ``input_name``); return ``"per-channel"``.

    With ``per_tensor_fallback``, a ``ValueError`` of the per-channel run (ORT's per-channel bias-scale check
    fails on some graphs) retries per tensor and returns ``"per-tensor"``; without it the error propagates.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(calib)

        def get_next(self) -> Optional[dict[str, np.ndarray]]:
            x = next(self.it, None)
            return None if x is None else {input_name: x}

    def run(per_channel: bool) -> None:
        quantize_static(src, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)

    try:
        run(True)
    except ValueError:
        if not per_tensor_fallback:
            raise
        run(False)
        return "per-tensor"
    return "per-channel"
