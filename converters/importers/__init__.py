"""Importers: float ONNX and float/hybrid TFLite models into the NHWC IR (converters.ir)."""
