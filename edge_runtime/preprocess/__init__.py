"""Streaming preprocessors that write straight into quantized model inputs.

Public entry points (kept stable for the daemon and the converter's calibration):

- :class:`PreprocessConfig` -- a validated preprocessing chain (YAML or dict);
- :func:`build_preprocessor` -- ``build_preprocessor(cfg, input_spec=None)`` builds it;
- :func:`load_config` -- preset name (``"kws"``, ``"sww"``, ``"vww"``, ``"ic"``) or YAML path -> config;
- :func:`float_config` -- the same chain with float32, unquantized output (calibration data).

Audio and sensor streams follow the ``push(chunk) -> n ready`` contract of
:mod:`edge_runtime.preprocess.base`; images go through
:class:`~edge_runtime.preprocess.image.ImagePreprocessor` (whole images or row by row).
"""
from edge_runtime.preprocess.config import PreprocessConfig, build_preprocessor, float_config, load_config, preset_names

__all__ = ["PreprocessConfig", "build_preprocessor", "float_config", "load_config", "preset_names"]
