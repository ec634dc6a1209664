"""Preprocessing chains as YAML, validated with pydantic.

The two public names, used by the daemon and by the converter's calibration, are:

- :class:`PreprocessConfig` -- the validated chain (``PreprocessConfig.model_validate(dict)``,
  or :func:`load_config` for a YAML path or a preset name such as ``"kws"``/``"sww"``);
- :func:`build_preprocessor` -- ``build_preprocessor(cfg, input_spec=None)`` returns the
  stream (audio, sensor), image preprocessor or feature hasher the config describes. When the
  model's input :class:`~edge_runtime.model.TensorSpec` is given, its shape, dtype, scale and
  zero point win over the config's, so the output is exactly what the model expects.

A chain has a ``kind`` (audio, image, sensor, categorical), one matching section, and a
``quantize`` section. Unknown keys are errors, so a typo cannot be silently ignored.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError, model_validator

from edge_runtime.errors import ConfigError

PRESET_DIR = Path(__file__).resolve().parent / "presets"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QuantizeConfig(_Strict):
    """How float features become the model's input integers (see ``quantize.Quantizer``)."""

    dtype: Literal["int8", "uint8", "int16", "float32"] = "int8"
    scale: Optional[PositiveFloat] = None
    zero_point: int = 0
    rounding: Literal["trunc", "round"] = Field("round", description="trunc = MLPerf reference; round = TFLite")
    overflow: Literal["wrap", "saturate"] = Field("saturate", description="wrap = MLPerf reference (low 8 bits)")


class FramingConfig(_Strict):
    """Frames of ``length`` samples every ``step`` samples (no end padding)."""

    length: PositiveInt
    step: PositiveInt

    @model_validator(mode="after")
    def _step(self) -> "FramingConfig":
        if self.step > self.length:
            raise ValueError(f"framing step {self.step} is longer than the frame length {self.length}")
        return self


class MelConfig(_Strict):
    """Mel filterbank: ``bands`` triangles from ``fmin`` to ``fmax`` Hz."""

    bands: PositiveInt
    fmin: float = Field(0.0, ge=0)
    fmax: Optional[PositiveFloat] = None
    scale: Literal["htk", "slaney"] = "htk"
    triangles: Literal["mel", "hz"] = "mel"
    norm: Literal["none", "slaney"] = "none"


class LogConfig(_Strict):
    """``ln``: ln(x + offset); ``db``: 10*log10(x + offset)."""

    kind: Literal["ln", "db"] = "ln"
    offset: float = Field(0.0, ge=0)


class AffineConfig(_Strict):
    """``(x + add) / divide``, then optionally clipped to ``clip``."""

    add: float = 0.0
    divide: PositiveFloat = 1.0
    clip: Optional[tuple[float, float]] = None


class DctConfig(_Strict):
    """DCT-II of the log-mel bands, keeping ``coefficients`` (MFCC)."""

    coefficients: PositiveInt
    norm: Literal["tf", "ortho"] = "tf"


class AudioConfig(_Strict):
    """Audio front-end: [pre-emphasis] -> frames -> window -> rFFT -> mel -> log -> [DCT | affine]."""

    sample_rate: PositiveInt = 16000
    pcm_scale: PositiveFloat = Field(1.0 / 32768.0, description="multiplier applied to integer PCM chunks")
    preemphasis: Optional[float] = Field(None, ge=0, lt=1)
    peak_normalize: bool = Field(False, description="divide each model window by its largest sample (KWS)")
    peak_span: Optional[PositiveInt] = Field(None, description="samples the peak is taken over (KWS: 16000)")
    pad_final_window: bool = Field(False, description="flush() zero-pads a partial last window (KWS clips)")
    framing: FramingConfig
    window: Literal["hann", "hamming", "rectangular"] = "hann"
    periodic_window: bool = True
    fft_length: Optional[PositiveInt] = None
    spectrum: Literal["magnitude", "power"] = "power"
    spectrum_scale: PositiveFloat = 1.0
    spectrum_floor: Optional[PositiveFloat] = None
    mel: MelConfig
    log: LogConfig = LogConfig()
    dct: Optional[DctConfig] = None
    affine: Optional[AffineConfig] = None

    @model_validator(mode="after")
    def _check(self) -> "AudioConfig":
        n = self.fft_length or 1 << (self.framing.length - 1).bit_length()
        if n < self.framing.length:
            raise ValueError(f"fft_length {n} is shorter than the frame length {self.framing.length}")
        if self.mel.fmax is not None and self.mel.fmax > self.sample_rate / 2:
            raise ValueError(f"mel fmax {self.mel.fmax} is above the Nyquist frequency {self.sample_rate / 2}")
        if self.dct is not None and self.dct.coefficients > self.mel.bands:
            raise ValueError(f"dct keeps {self.dct.coefficients} coefficients but there are only {self.mel.bands} bands")
        if self.peak_span is not None and self.peak_span % self.framing.step:
            raise ValueError(f"peak_span {self.peak_span} must be a multiple of the framing step {self.framing.step}")
        return self

    @property
    def n_fft(self) -> int:
        """FFT length (the next power of two at or above the frame length unless set)."""
        return self.fft_length or 1 << (self.framing.length - 1).bit_length()

    @property
    def features(self) -> int:
        """Features per frame: DCT coefficients or mel bands."""
        return self.dct.coefficients if self.dct else self.mel.bands


class WindowsConfig(_Strict):
    """Model input windows: ``frames`` consecutive frames, a new window every ``hop_frames``.

    ``start="firmware"`` mimics the MLPerf SWW firmware: the frame buffer starts with
    ``length - step`` zeros, the window starts filled with ``prefill`` codes, and a window is
    emitted for every frame from the first.
    """

    frames: PositiveInt
    hop_frames: PositiveInt = 1
    start: Literal["full", "firmware"] = "full"
    prefill: int = 0


class CropConfig(_Strict):
    """Centre crop before resizing: keep ``fraction`` of each side, or match the output aspect."""

    fraction: float = Field(1.0, gt=0, le=1)
    match_aspect: bool = False


class ImageConfig(_Strict):
    """Image chain: decode -> centre crop -> resize -> scale/normalise -> quantize into NHWC/NCHW."""

    size: Optional[tuple[PositiveInt, PositiveInt]] = Field(None, description="(height, width); default from the model")
    channels: Literal[1, 3] = 3
    crop: CropConfig = CropConfig()
    resize: Literal["nearest", "bilinear", "area"] = "bilinear"
    layout: Literal["NHWC", "NCHW"] = "NHWC"
    pixel_scale: float = Field(1.0 / 255.0, gt=0)
    mean: list[float] = [0.0]
    std: list[PositiveFloat] = [1.0]


class ProjectionConfig(_Strict):
    """Window reduction: ``pca`` (mean/components fitted on host, from ``file`` .npz or inline) or ``random``."""

    kind: Literal["pca", "random"]
    out_features: Optional[PositiveInt] = None
    file: Optional[str] = None
    mean: Optional[list[float]] = None
    components: Optional[list[list[float]]] = None
    seed: int = 0
    density: float = Field(1.0 / 3.0, gt=0, le=1)

    @model_validator(mode="after")
    def _check(self) -> "ProjectionConfig":
        if self.kind == "pca" and self.file is None and self.components is None:
            raise ValueError("a pca projection needs `file` (.npz with mean, components) or inline `components`")
        if self.kind == "random" and self.out_features is None:
            raise ValueError("a random projection needs out_features")
        return self


class SensorConfig(_Strict):
    """Multi-channel sensor windows: ``window`` samples every ``hop``, normalised per channel."""

    channels: PositiveInt
    window: PositiveInt
    hop: PositiveInt
    mean: Optional[list[float]] = None
    std: Optional[list[PositiveFloat]] = None
    projection: Optional[ProjectionConfig] = None

    @model_validator(mode="after")
    def _check(self) -> "SensorConfig":
        for name in ("mean", "std"):
            v = getattr(self, name)
            if v is not None and len(v) != self.channels:
                raise ValueError(f"{name} has {len(v)} values but there are {self.channels} channels")
        return self


class HashingConfig(_Strict):
    """Feature hashing of categorical tokens into ``n_features`` buckets (scikit-learn compatible)."""

    n_features: PositiveInt
    alternate_sign: bool = True


class DetectionConfig(_Strict):
    """How the stream command turns outputs into events (see ``preprocess.detection``)."""

    target_index: int = 0
    threshold: float = Field(0.95, gt=0, lt=1)


class PreprocessConfig(_Strict):
    """A whole preprocessing chain. ``kind`` selects the section that must be present."""

    name: str = "custom"
    description: str = ""
    kind: Literal["audio", "image", "sensor", "categorical"]
    audio: Optional[AudioConfig] = None
    windows: Optional[WindowsConfig] = None
    image: Optional[ImageConfig] = None
    sensor: Optional[SensorConfig] = None
    hashing: Optional[HashingConfig] = None
    quantize: QuantizeConfig = QuantizeConfig()
    input_shape: Optional[tuple[PositiveInt, ...]] = Field(None, description="the model input tensor's shape")
    max_chunk: PositiveInt = Field(16384, description="largest chunk push() accepts, in samples")
    labels: Optional[list[str]] = None
    detection: Optional[DetectionConfig] = None
    base_dir: Optional[str] = Field(None, description="where relative file paths resolve (set by load_config)")

    @model_validator(mode="after")
    def _sections(self) -> "PreprocessConfig":
        need = {"audio": ("audio", "windows"), "image": ("image",), "sensor": ("sensor",), "categorical": ("hashing",)}
        for section in need[self.kind]:
            if getattr(self, section) is None:
                raise ValueError(f"a {self.kind} chain needs a `{section}` section")
        extra = [s for s in ("audio", "windows", "image", "sensor", "hashing")
                 if getattr(self, s) is not None and s not in need[self.kind]]
        if extra:
            raise ValueError(f"a {self.kind} chain cannot have section(s) {extra}")
        return self


def float_config(cfg: "PreprocessConfig | str | Path | Mapping[str, Any]") -> PreprocessConfig:
    """The same chain with float32 output and no quantization (for calibration data or inspection)."""
    return load_config(cfg).model_copy(update={"quantize": QuantizeConfig(dtype="float32")})


def preset_names() -> list[str]:
    """Names of the built-in presets (``kws``, ``sww``, ...)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_config(source: Union[str, Path, Mapping[str, Any], PreprocessConfig]) -> PreprocessConfig:
    """A preset name, a YAML path, a mapping or a config -> validated :class:`PreprocessConfig`."""
    if isinstance(source, PreprocessConfig):
        return source
    base_dir = None
    if isinstance(source, Mapping):
        data: Any = dict(source)
    else:
        path = Path(source)
        if not path.suffix and (PRESET_DIR / f"{path.name}.yaml").is_file():
            path = PRESET_DIR / f"{path.name}.yaml"
        if not path.is_file():
            raise ConfigError(f"{source}: no such preprocessing config file or preset (presets: {', '.join(preset_names())})")
        from edge_runtime.safe_yaml import load_yaml_file

        data = load_yaml_file(path, "preprocessing config")
        base_dir = str(path.resolve().parent)
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a preprocessing config must be a YAML mapping, got {type(data).__name__}")
        data.setdefault("base_dir", base_dir)
    try:
        return PreprocessConfig.model_validate(data)
    except ValidationError as exc:
        where = f"{source}" if base_dir else "preprocessing config"
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{where}: {problems}") from None


def build_preprocessor(cfg: Union[str, Path, Mapping[str, Any], PreprocessConfig], input_spec: Any = None) -> Any:
    """Build the preprocessor a config describes, writing into ``input_spec``'s layout if given.

    Returns an :class:`~edge_runtime.preprocess.audio.AudioStream`,
    :class:`~edge_runtime.preprocess.sensor.SensorStream`,
    :class:`~edge_runtime.preprocess.image.ImagePreprocessor` or
    :class:`~edge_runtime.preprocess.sensor.FeatureHasher`. ``input_spec`` is a
    :class:`~edge_runtime.model.TensorSpec` (for example ``model.inputs[0]``).
    """
    cfg = load_config(cfg)
    if cfg.kind == "audio":
        from edge_runtime.preprocess.audio import AudioStream

        return AudioStream.from_config(cfg, input_spec)
    if cfg.kind == "image":
        from edge_runtime.preprocess.image import ImagePreprocessor

        return ImagePreprocessor.from_config(cfg, input_spec)
    if cfg.kind == "sensor":
        from edge_runtime.preprocess.sensor import SensorStream

        return SensorStream.from_config(cfg, input_spec)
    from edge_runtime.preprocess.sensor import FeatureHasher

    assert cfg.hashing is not None
    return FeatureHasher(cfg.hashing.n_features, cfg.hashing.alternate_sign)


def resolve_quantization(cfg: PreprocessConfig, input_spec: Any, default_shape: tuple[int, ...]) -> tuple[tuple[int, ...], dict[str, Any]]:
    """The output shape and Quantizer keyword arguments, taking the model's input spec over the config."""
    q = cfg.quantize
    shape = tuple(cfg.input_shape) if cfg.input_shape else default_shape
    kw: dict[str, Any] = dict(dtype=q.dtype, scale=q.scale, zero_point=q.zero_point,
                              rounding=q.rounding, overflow=q.overflow)
    if input_spec is not None:
        import numpy as np

        shape = tuple(int(d) for d in input_spec.shape)
        name = np.dtype(input_spec.dtype).name
        if name not in ("int8", "uint8", "int16", "float32"):
            raise ConfigError(f"model input '{input_spec.name}' has dtype {name}; preprocessing writes int8, uint8, int16 or float32")
        kw["dtype"] = name
        if getattr(input_spec, "quantized", False):
            kw["scale"], kw["zero_point"] = float(input_spec.scale), int(input_spec.zero_point)
        elif name != "float32":
            raise ConfigError(f"model input '{input_spec.name}' is {name} but has no quantization parameters")
        else:
            kw["scale"] = None
    if kw["dtype"] != "float32" and kw["scale"] is None:
        raise ConfigError(f"config '{cfg.name}': quantize.dtype is {kw['dtype']} but quantize.scale is not set "
                          "(give it, or pass the model's input spec)")
    return shape, kw
