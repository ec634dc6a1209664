"""Microcontroller deliverables for an int8 .tflite.

- :func:`converters.codegen.tflm.export_tflm`: a TensorFlow Lite Micro project (C array with the
  offline plan embedded, an op resolver with exactly the model's ops, the measured arena size);
- :func:`converters.codegen.emit.generate_c`: portable C99 (no heap, no libc beyond memcpy/memset,
  one static arena with the in-place plan of :mod:`converters.codegen.memory`, weights ``const``),
  with kernels in ``kernels/`` (one op per file) that are bit-exact with the micro backend and so
  with tflite-micro; ``firmware_sim.mcu`` builds and runs it on the host or an emulated Cortex-M.
"""
