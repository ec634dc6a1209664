"""Shipped data for edge-convert demo: the digits CNN (float ONNX), calibration and sample inputs."""
