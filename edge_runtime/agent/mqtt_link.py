"""The agent's MQTT side: subscribe to the group's announcements, publish retained statuses."""
from __future__ import annotations

import json
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, Optional

from edge_runtime.agent.announce import topic
from edge_runtime.errors import ConfigError


def parse_mqtt_url(url: str) -> tuple[str, int]:
    """``mqtt://HOST[:PORT]`` -> (host, port)."""
    u = urllib.parse.urlparse(url)
    if u.scheme not in ("mqtt", "tcp") or not u.hostname:
        raise ConfigError(f"MQTT URL must look like mqtt://HOST:PORT, got {url!r}")
    return u.hostname, u.port or 1883


@dataclass(frozen=True)
class MqttAuth:
    """Login and TLS for a broker: a password, the CA of its certificate, a client certificate."""

    username: Optional[str] = None
    password: Optional[str] = None
    ca_file: Optional[str] = None
    cert_file: Optional[str] = None
    key_file: Optional[str] = None
    check_hostname: bool = True


def make_client(url: str, client_id: str = "", keepalive_s: int = 30,
                on_connect: Optional[Callable[..., None]] = None,
                on_message: Optional[Callable[..., None]] = None, auth: Optional[MqttAuth] = None) -> Any:
    """A connected paho client with its network thread running (reconnects by itself)."""
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise ConfigError("the agent needs paho-mqtt: pip install 'edge-runtime[mqtt]'") from None
    host, port = parse_mqtt_url(url)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    c.reconnect_delay_set(0.2, 5)
    if auth is not None and auth.username is not None:
        c.username_pw_set(auth.username, auth.password)
    if auth is not None and auth.ca_file is not None:
        import ssl

        try:
            ctx = ssl.create_default_context(cafile=auth.ca_file)
            if auth.cert_file:
                ctx.load_cert_chain(auth.cert_file, auth.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"MQTT TLS files: {exc}") from None
        ctx.check_hostname = auth.check_hostname
        c.tls_set_context(ctx)
    if on_connect is not None:
        c.on_connect = on_connect
    if on_message is not None:
        c.on_message = on_message
    c.connect_async(host, port, keepalive_s)
    c.loop_start()
    return c


class AgentLink:
    """Feeds announcements to ``offer`` and publishes ``report`` messages for one device."""

    def __init__(self, url: str, prefix: str, fleet: str, group: str, device_id: str, keepalive_s: int = 30,
                 auth: Optional[MqttAuth] = None) -> None:
        self.announce_topic = topic(prefix, fleet, group, "announce")
        self.status_topic = topic(prefix, fleet, group, f"status/{device_id}")
        self.url, self.device_id, self.keepalive_s, self.auth = url, device_id, keepalive_s, auth
        self.connected = threading.Event()
        self.client: Any = None

    def start(self, offer: Callable[[bytes], Any]) -> None:
        """Connect and subscribe (again after every reconnect)."""
        def on_connect(client: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
            if not getattr(rc, "is_failure", False):
                client.subscribe(self.announce_topic, qos=1)
                self.connected.set()

        def on_message(_c: Any, _u: Any, msg: Any) -> None:
            offer(msg.payload)

        self.client = make_client(self.url, f"edge-agent-{self.device_id}-{int(time.time() * 1000) % 10**8}",
                                  self.keepalive_s, on_connect, on_message, self.auth)

    def report(self, status: dict[str, Any]) -> None:
        """Publish a status, retained, QoS 1 (paho queues it while disconnected)."""
        if self.client is not None:
            self.client.publish(self.status_topic, json.dumps(status, sort_keys=True), qos=1, retain=True)

    def stop(self) -> None:
        """Flush briefly and disconnect."""
        if self.client is not None:
            time.sleep(0.05)
            self.client.disconnect()
            self.client.loop_stop()
