"""``agent.yaml``: who the device is, where the broker, keys, install root and daemon are."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_runtime.agent.mqtt_link import MqttAuth
from edge_runtime.daemon.config import MqttTls
from edge_runtime.errors import ConfigError

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MqttSettings(_Strict):
    """The control channel (TLS and password as for the daemon's MQTT sink)."""

    url: str = Field("mqtt://127.0.0.1:1883", description="mqtt://HOST:PORT")
    topic_prefix: str = Field("edge-runtime/fleet", description="topics are PREFIX/FLEET/GROUP/announce|status/ID")
    keepalive_s: int = Field(30, ge=5)
    username: Optional[str] = None
    password_file: Optional[str] = Field(None, description="file holding the password (first line)")
    password_env: Optional[str] = Field(None, description="environment variable holding the password")
    tls: Optional[MqttTls] = None

    def auth(self) -> MqttAuth:
        """What :func:`edge_runtime.agent.mqtt_link.make_client` needs to log in."""
        from edge_runtime.daemon.sinks import mqtt_password

        t = self.tls
        return MqttAuth(self.username, mqtt_password(self) if self.username else None,
                        t.ca_file if t else None, t.cert_file if t else None, t.key_file if t else None,
                        t.check_hostname if t else True)


class HealthSettings(_Strict):
    """The gate before commit."""

    url: str = Field("http://127.0.0.1:9100/healthz", description="the daemon's /healthz")
    commit_after_s: float = Field(30.0, ge=0, description="ok this long in a row before committing")
    timeout_s: float = Field(120.0, gt=0, description="roll back if not committed within this time")
    interval_s: float = Field(1.0, gt=0)
    max_unhealthy: int = Field(5, ge=1, description="roll back at once after this many not-ok answers in a row")


class ReloadSettings(_Strict):
    """How to make the daemon load the new release: a command, or a signal to a pid file."""

    command: Optional[list[str]] = Field(None, description="e.g. [systemctl, restart, edge-runtime]")
    pid_file: Optional[str] = None
    signal: str = Field("HUP", description="signal name sent to the pid in pid_file")
    timeout_s: float = Field(60.0, gt=0)


class DownloadSettings(_Strict):
    """HTTP downloads."""

    timeout_s: float = Field(30.0, gt=0, description="per request (connect and each read)")
    retries: int = Field(5, ge=0)


class AgentConfig(_Strict):
    """The whole agent config."""

    device_id: str = Field(pattern=_NAME, max_length=100)
    fleet: str = Field(pattern=_NAME)
    group: str = Field(pattern=_NAME)
    pubkey: Optional[str] = Field(None, description="the fleet's public key file (announcements, bundles, device files)")
    allow_unsigned: bool = Field(False, description="accept unsigned announcements and bundles (NOT secure)")
    install_root: str = Field(description="where bundles are installed (current -> releases/<id>)")
    state_dir: str = Field(description="downloads and the agent's state file")
    keep: int = Field(2, ge=2, description="releases kept on disk (at least current and previous)")
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    reload: ReloadSettings = Field(default_factory=ReloadSettings)
    download: DownloadSettings = Field(default_factory=DownloadSettings)


def load_agent_config(path: Union[str, os.PathLike]) -> AgentConfig:
    """Read and validate ``agent.yaml``; relative paths are relative to the file."""
    from edge_runtime.safe_yaml import load_yaml_file

    p = os.fspath(path)
    raw = load_yaml_file(p, "agent config")
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: the top level must be a mapping")
    base = Path(p).resolve().parent
    mqtt = raw.get("mqtt") if isinstance(raw.get("mqtt"), dict) else {}
    tls = mqtt.get("tls") if isinstance(mqtt.get("tls"), dict) else {}
    for holder, keys in ((raw, ("pubkey", "install_root", "state_dir")), (mqtt, ("password_file",)),
                         (tls, ("ca_file", "cert_file", "key_file"))):
        for key in keys:
            if isinstance(holder.get(key), str) and not os.path.isabs(holder[key]):
                holder[key] = str(base / holder[key])
    try:
        cfg = AgentConfig.model_validate(raw)
    except ValidationError as exc:
        e = exc.errors()[0]
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        raise ConfigError(f"{p}: field '{loc}': {e['msg']}") from None
    if cfg.pubkey is None and not cfg.allow_unsigned:
        raise ConfigError(f"{p}: field 'pubkey': required (or allow_unsigned: true, which is NOT secure)")
    return cfg
