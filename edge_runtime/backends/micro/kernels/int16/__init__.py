"""16x8 kernels: int16 activations with int8 weights (TFLM's int16 CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED).

The core registry entries (``kernels/dispatch.py``) pick these when the op's input is int16.
"""
