"""Custom ops TFLM registers (TFLite_Detection_PostProcess, Signal*): custom code -> kernel class."""
from __future__ import annotations

from edge_runtime.backends.micro.kernels.base import Kernel
from edge_runtime.backends.micro.kernels.custom.detection_postprocess import DetectionPostProcess
from edge_runtime.backends.micro.kernels.custom.signal_window import SignalWindow
from edge_runtime.backends.micro.kernels.custom.signal_energy import SignalEnergy
from edge_runtime.backends.micro.kernels.custom.signal_rfft import SignalRfft

REGISTRY: dict[str, type[Kernel]] = {
    "TFLite_Detection_PostProcess": DetectionPostProcess,
    "SignalWindow": SignalWindow,
    "SignalEnergy": SignalEnergy,
    "SignalRfft": SignalRfft,
}
