"""Host-side converter: float ONNX/TFLite to int8 TFLite and int8 ONNX, sized to a device profile.

May import :mod:`edge_runtime`; :mod:`edge_runtime` never imports this package.
"""
