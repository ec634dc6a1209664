"""The daemon's configuration: a YAML file validated with pydantic, and command-line overrides.

``load_config(path, overrides)`` returns a :class:`DaemonConfig` or raises
:class:`~edge_runtime.errors.ConfigError` naming the file, the field and the problem.
Flags alone (``--model`` and friends) make a complete config without a file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge_runtime.errors import ConfigError

try:  # the streaming preprocessors are optional; their config model is used when present
    from edge_runtime.preprocess.config import PreprocessConfig as _PreprocessConfig  # type: ignore
except Exception:  # noqa: BLE001 - absent or not importable yet: accept no preprocessing section
    _PreprocessConfig = None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Strict):
    """Which model to serve and how to reload it."""

    path: str = Field(description="model file (.tflite or .onnx)")
    backend: str = Field("auto", description="litert, tflite, onnx, micro or auto")
    version: Optional[str] = Field(None, description="version label in metrics; default: first 12 hex of the file's SHA-256")
    labels: Optional[list[str]] = Field(None, description="class names, index = output position")
    test_input: Optional[str] = Field(None, description=".npy input used to check a new model before swapping it in")
    watch: bool = Field(False, description="reload when the model file changes")
    watch_interval_s: float = Field(2.0, gt=0)
    options: dict[str, Any] = Field(default_factory=dict, description="backend options passed to edge_runtime.load")


class SerialSource(_Strict):
    """A serial port (device path, pty, or pyserial URL such as loop://)."""

    type: Literal["serial"]
    port: str
    baudrate: int = Field(115200, gt=0)
    hello: bool = Field(True, description="send a HELLO frame when the port opens")


class TcpSource(_Strict):
    """A TCP listener speaking the framing; each connection is one device."""

    type: Literal["tcp"]
    host: str = "127.0.0.1"
    port: int = Field(ge=0, le=65535)
    max_connections: int = Field(8, ge=1, le=4096)
    idle_timeout_s: float = Field(60.0, gt=0, description="close a connection that sends nothing for this long")
    evict_after_s: float = Field(1.0, ge=0, description="when every slot is taken, a new connection replaces the "
                                                        "longest-idle one that has sent no valid frame for this long")


class FileSource(_Strict):
    """A .npy file of samples (first axis), or a framed byte stream from a file or stdin ('-')."""

    type: Literal["file"]
    path: str
    rate_hz: Optional[float] = Field(None, gt=0, description="pace samples from a .npy file; default as fast as possible")
    exit_at_end: bool = Field(True, description="drain and exit when the file ends")


SourceConfig = Union[SerialSource, TcpSource, FileSource]


class PipelineConfig(_Strict):
    """Queues, overload policy and dynamic batching (Triton's meaning)."""

    queue_size: int = Field(64, ge=1, le=1_000_000, description="bounded request queue length")
    overload: Literal["drop_oldest", "drop_newest", "block"] = "drop_oldest"
    max_batch_size: int = Field(8, ge=1, description="most requests handed to one worker call")
    max_queue_delay_ms: float = Field(0.0, ge=0, description="how long a request may wait for others to join its batch")
    result_queue_size: int = Field(256, ge=1)
    max_frame_bytes: int = Field(1 << 20, ge=16, le=64 << 20, description="largest payload accepted on a link")
    max_buffered_bytes: int = Field(16 << 20, ge=4096, le=1 << 30,
                                    description="all links' unfinished frames together; past it the link holding "
                                                "the most is closed")
    payload_dtype: Literal["int16", "float32", "uint8", "int8"] = Field(
        "int16", description="sample type of DATA payloads fed to an audio or sensor preprocessing stream")


class ArgmaxPost(_Strict):
    """Label = the class with the highest score."""

    type: Literal["argmax"]
    labels: Optional[list[str]] = None


class ThresholdPost(_Strict):
    """Clear the label when its score is below ``min_score``."""

    type: Literal["threshold"]
    min_score: float
    below_label: Optional[str] = Field(None, description="label to report instead (default: null)")


class SmoothPost(_Strict):
    """Moving average of the scores over the last ``window`` results of a stream."""

    type: Literal["smooth"]
    window: int = Field(ge=1, le=4096)


class TopKPost(_Strict):
    """Report the ``k`` best classes with their scores."""

    type: Literal["topk"]
    k: int = Field(ge=1)


PostConfig = Annotated[Union[ArgmaxPost, ThresholdPost, SmoothPost, TopKPost], Field(discriminator="type")]


class JsonlSink(_Strict):
    """JSON Lines, one result per line, to a file or '-' for stdout."""

    type: Literal["jsonl"]
    path: str = "-"
    flush: bool = True


class ReplySink(_Strict):
    """Send each result back, as a RESULT frame, over the link its frame came in on."""

    type: Literal["reply"]


class MqttTls(_Strict):
    """TLS to the broker: the CA that signed its certificate, and optionally a client certificate."""

    ca_file: str = Field(description="PEM file of the CA (or CAs) that signed the broker's certificate")
    cert_file: Optional[str] = Field(None, description="client certificate (PEM), for brokers that require one")
    key_file: Optional[str] = Field(None, description="the client certificate's private key (PEM)")
    check_hostname: bool = Field(True, description="check that the broker's certificate names the host")

    @model_validator(mode="after")
    def _pair(self) -> "MqttTls":
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give both cert_file and key_file, or neither")
        return self


class MqttSink(_Strict):
    """Publish each result as JSON with QoS 1; reconnect with backoff; bounded offline buffer.

    ``topic`` and ``status_topic`` may contain ``{device_id}``. Every result carries ``device_id``.
    The status topic gets a retained ``online`` when connected and, through the broker's last
    will, a retained ``offline`` when the daemon goes away. Passwords come from a file or an
    environment variable, never from this file.
    """

    type: Literal["mqtt"]
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    topic: str = "edge-runtime/{device_id}/results"
    status_topic: Optional[str] = Field("edge-runtime/{device_id}/status",
                                        description="retained online/offline (last will); null to disable")
    device_id: Optional[str] = Field(None, description="this device's id (default: the host name)")
    username: Optional[str] = None
    password_file: Optional[str] = Field(None, description="file holding the password (first line)")
    password_env: Optional[str] = Field(None, description="environment variable holding the password")
    tls: Optional[MqttTls] = None
    client_id: Optional[str] = None
    qos: Literal[0, 1, 2] = 1
    offline_buffer: int = Field(10000, ge=1, description="results kept while the broker is unreachable")
    max_inflight: int = Field(20, ge=1)
    keepalive_s: int = Field(30, ge=5)
    reconnect_min_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)


SinkConfig = Annotated[Union[JsonlSink, ReplySink, MqttSink], Field(discriminator="type")]


class HealthConfig(_Strict):
    """Where to serve /healthz and /metrics: 'HOST:PORT' or 'unix:PATH'."""

    listen: str = "127.0.0.1:0"
    max_connections: int = Field(16, ge=1, le=1024, description="concurrent health/metrics clients; more are "
                                                                 "closed at once")
    request_timeout_s: float = Field(5.0, gt=0, le=300, description="a whole request must arrive within this")

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, v: str) -> str:
        if v.startswith("unix:"):
            if len(v) <= 5:
                raise ValueError("'unix:' needs a socket path")
            return v
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected HOST:PORT or unix:PATH, got {v!r}")
        return v


class DaemonConfig(_Strict):
    """The whole daemon configuration (``device.yaml``)."""

    model: ModelConfig
    source: SourceConfig = Field(discriminator="type")
    sinks: list[SinkConfig] = Field(default_factory=lambda: [JsonlSink(type="jsonl")])
    postprocess: list[PostConfig] = Field(default_factory=list)
    preprocess: Optional[Any] = Field(None, description="edge_runtime.preprocess PreprocessConfig")
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    health: Optional[HealthConfig] = None
    profile: Optional[str] = Field(None, description="device profile: a board name or a YAML path")
    memory_budget_bytes: Optional[int] = Field(None, gt=0, description="overrides the profile's inference RAM budget")
    drain_timeout_s: float = Field(30.0, gt=0)

    @field_validator("preprocess")
    @classmethod
    def _check_preprocess(cls, v: Any) -> Any:
        if v is None:
            return None
        if _PreprocessConfig is None:
            raise ValueError("preprocessing is not available in this installation (edge_runtime.preprocess is missing)")
        if isinstance(v, str):  # a preset name ('kws') or a YAML path
            from edge_runtime.preprocess.config import load_config as load_preprocess

            try:
                return load_preprocess(v)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return _PreprocessConfig.model_validate(v)

    @model_validator(mode="after")
    def _check_post(self) -> "DaemonConfig":
        if self.source.type == "file" and "overload" not in self.pipeline.model_fields_set:
            # a file can always wait; dropping its samples would only lose data
            self.pipeline.overload = "block"
        seen_label = False
        for i, p in enumerate(self.postprocess):
            if p.type in ("argmax", "topk"):
                seen_label = True
            if p.type == "threshold" and not seen_label:
                raise ValueError(f"postprocess[{i}] threshold must come after an argmax or topk step")
        return self


# -- parsing flags ------------------------------------------------------------

def parse_source_url(url: str) -> dict[str, Any]:
    """``tcp://HOST:PORT``, ``serial:///dev/ttyX?baud=N``, ``serial:loop://``, ``file:PATH`` or ``file:-``."""
    if url.startswith("file:"):
        return {"type": "file", "path": url[5:] or "-"}
    if url == "-":
        return {"type": "file", "path": "-"}
    if url.startswith("serial:"):
        rest = url[len("serial:"):]
        if rest.startswith("//"):
            rest = rest[2:]
        port, _, query = rest.partition("?")
        q = parse_qs(query)
        out: dict[str, Any] = {"type": "serial", "port": port}
        if "baud" in q:
            try:
                out["baudrate"] = int(q["baud"][0])
            except ValueError:
                raise ConfigError(f"--source {url!r}: baud must be an integer") from None
        return out
    if url.startswith("tcp://"):
        u = urlsplit(url)
        if u.port is None:
            raise ConfigError(f"--source {url!r}: expected tcp://HOST:PORT")
        return {"type": "tcp", "host": u.hostname or "127.0.0.1", "port": u.port}
    raise ConfigError(
        f"--source {url!r}: expected tcp://HOST:PORT, serial:///dev/ttyX?baud=N, serial:loop://, file:PATH or file:-"
    )


def parse_sink_url(url: str) -> dict[str, Any]:
    """``jsonl:PATH``, ``jsonl:-``, ``reply`` (alias ``serial``) or ``mqtt://HOST:PORT/TOPIC``."""
    if url.startswith("jsonl:"):
        return {"type": "jsonl", "path": url[6:] or "-"}
    if url in ("reply", "serial"):
        return {"type": "reply"}
    if url.startswith("mqtt://"):
        u = urlsplit(url)
        topic = u.path.lstrip("/")
        if not topic:
            raise ConfigError(f"--sink {url!r}: expected mqtt://HOST:PORT/TOPIC")
        out: dict[str, Any] = {"type": "mqtt", "host": u.hostname or "127.0.0.1", "topic": topic}
        if u.port:
            out["port"] = u.port
        return out
    raise ConfigError(f"--sink {url!r}: expected jsonl:PATH, jsonl:-, reply or mqtt://HOST:PORT/TOPIC")


def _format_validation(err: ValidationError, origin: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not (isinstance(p, str) and p in ("serial", "tcp", "file", "jsonl", "reply", "mqtt", "argmax", "threshold", "smooth", "topk")))
        msg = e["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if e["type"] != "missing" and "input" in e and isinstance(e["input"], (str, int, float, bool)) and e["input"] is not None:
            msg = f"{msg} (got {e['input']!r})"
        lines.append(f"{origin}: field '{loc or '(top level)'}': {msg}")
    return "; ".join(lines)


def config_base_dir(path: Path) -> Path:
    """Where a config's relative paths start: its bundle release's root when it lies in one, else its folder.

    A fleet bundle keeps the group's ``device.yaml`` at its root and each device's config in
    ``devices/<id>.yaml``; both name files (``models/...``) from the bundle root. A release is
    recognised by its ``manifest.json`` beside ``devices/``.
    """
    folder = path.resolve().parent
    for candidate in (folder, folder.parent):
        if (candidate / "manifest.json").is_file() and (folder == candidate or folder.name == "devices"):
            return candidate
    return folder


def load_config(path: Optional[Union[str, Path]], overrides: Optional[dict[str, Any]] = None) -> DaemonConfig:
    """Read ``path`` (YAML) if given, apply flag ``overrides`` (merged per section), validate."""
    raw: dict[str, Any] = {}
    origin = "command-line flags"
    if path is not None:
        from edge_runtime.safe_yaml import load_yaml_file

        origin = str(path)
        data = load_yaml_file(path, "config file")
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
        raw = data
        base = config_base_dir(Path(path))
        for sink in raw.get("sinks") or []:  # files a sink reads are relative to the config too
            if isinstance(sink, dict):
                for holder in (sink, sink.get("tls") if isinstance(sink.get("tls"), dict) else {}):
                    for key in ("password_file", "ca_file", "cert_file", "key_file"):
                        if isinstance(holder.get(key), str) and not Path(holder[key]).is_absolute():
                            holder[key] = str(base / holder[key])
        m = raw.get("model")
        if isinstance(m, dict):
            for key in ("path", "test_input"):
                if isinstance(m.get(key), str) and not Path(m[key]).is_absolute():
                    m[key] = str(base / m[key])
        # A profile given as a file (a bundle's own profile.yaml) is relative to the config file too.
        prof = raw.get("profile")
        if isinstance(prof, str) and prof.endswith((".yaml", ".yml")) and not Path(prof).is_absolute():
            raw["profile"] = str(base / prof)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key in ("model", "pipeline") and isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
        if path is not None:
            origin = f"{path} (with command-line overrides)"
    if "model" not in raw:
        raise ConfigError(f"{origin}: field 'model': required (give --model or a 'model:' section)")
    if "source" not in raw:
        raw["source"] = {"type": "file", "path": "-"}
    try:
        return DaemonConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, origin)) from None
