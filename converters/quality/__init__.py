"""Quantization quality: per-output metrics (:mod:`.metrics`) and per-layer sensitivity (:mod:`.sensitivity`)."""
