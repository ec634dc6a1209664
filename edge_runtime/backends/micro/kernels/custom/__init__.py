"""Custom ops TFLM registers (TFLite_Detection_PostProcess, Signal*) and MediaPipe's float
``Convolution2DTransposeBias`` (LiteRT registers it; TFLM does not): custom code -> kernel class."""
from __future__ import annotations

from edge_runtime.backends.micro.kernels.base import Kernel
from edge_runtime.backends.micro.kernels.custom.circular_buffer import CircularBuffer
from edge_runtime.backends.micro.kernels.custom.convolution_2d_transpose_bias import Convolution2DTransposeBias
from edge_runtime.backends.micro.kernels.custom.detection_postprocess import DetectionPostProcess
from edge_runtime.backends.micro.kernels.custom.signal_delay import SignalDelay
from edge_runtime.backends.micro.kernels.custom.signal_energy import SignalEnergy
from edge_runtime.backends.micro.kernels.custom.signal_fft_auto_scale import SignalFftAutoScale
from edge_runtime.backends.micro.kernels.custom.signal_filter_bank import SignalFilterBank
from edge_runtime.backends.micro.kernels.custom.signal_filter_bank_log import SignalFilterBankLog
from edge_runtime.backends.micro.kernels.custom.signal_filter_bank_spectral_subtraction import (
    SignalFilterBankSpectralSubtraction,
)
from edge_runtime.backends.micro.kernels.custom.signal_filter_bank_square_root import SignalFilterBankSquareRoot
from edge_runtime.backends.micro.kernels.custom.signal_framer import SignalFramer
from edge_runtime.backends.micro.kernels.custom.signal_irfft import SignalIrfft
from edge_runtime.backends.micro.kernels.custom.signal_overlap_add import SignalOverlapAdd
from edge_runtime.backends.micro.kernels.custom.signal_pcan import SignalPCAN
from edge_runtime.backends.micro.kernels.custom.signal_rfft import SignalRfft
from edge_runtime.backends.micro.kernels.custom.signal_stacker import SignalStacker
from edge_runtime.backends.micro.kernels.custom.signal_window import SignalWindow
from edge_runtime.backends.micro.kernels.custom.tflm_decode import TflmDecode

REGISTRY: dict[str, type[Kernel]] = {
    "TFLite_Detection_PostProcess": DetectionPostProcess,
    "CIRCULAR_BUFFER": CircularBuffer,
    "Convolution2DTransposeBias": Convolution2DTransposeBias,
    "SignalDelay": SignalDelay,
    "SignalEnergy": SignalEnergy,
    "SignalFftAutoScale": SignalFftAutoScale,
    "SignalFilterBank": SignalFilterBank,
    "SignalFilterBankLog": SignalFilterBankLog,
    "SignalFilterBankSpectralSubtraction": SignalFilterBankSpectralSubtraction,
    "SignalFilterBankSquareRoot": SignalFilterBankSquareRoot,
    "SignalFramer": SignalFramer,
    "SignalIrfft": SignalIrfft,
    "SignalOverlapAdd": SignalOverlapAdd,
    "SignalPCAN": SignalPCAN,
    "SignalRfft": SignalRfft,
    "SignalStacker": SignalStacker,
    "SignalWindow": SignalWindow,
    "TFLM_DECODE": TflmDecode,
}
