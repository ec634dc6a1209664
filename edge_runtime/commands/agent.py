"""``edge-runtime agent --config agent.yaml``: take part in staged rollouts over MQTT + HTTP."""
from __future__ import annotations

import argparse
import json
import signal
import threading

NAME = "agent"
HELP = "the rollout agent: install announced bundles, commit after /healthz is ok, else roll back"
DESCRIPTION = """\
Subscribe to the group's signed announcements (MQTT topic PREFIX/FLEET/GROUP/announce,
retained). For each newer release whose wave includes this device (a stable hash of the
device id against the wave's percentage): download the bundle over HTTP(S), resuming an
interrupted download and checking its sha256; verify its signature and the device's own
signed config file; install it atomically; reload the daemon; commit once /healthz has
said ok for health.commit_after_s, else roll back to the previous release by itself.
Each step (release, state, reason) is published retained on PREFIX/FLEET/GROUP/status/ID.
A replayed older announcement is ignored; a release that failed here is not retried.

agent.yaml:
  device_id: cam-0001
  fleet: plant-a
  group: line-cameras
  pubkey: /etc/edge-runtime/fleet.pub
  install_root: /var/lib/edge-runtime/bundles
  state_dir: /var/lib/edge-runtime/agent
  mqtt: {url: "mqtt://broker.local:8883", username: cam-0001, password_file: /etc/edge-runtime/mqtt.pass,
         tls: {ca_file: /etc/edge-runtime/broker-ca.pem}}
  health: {url: "http://127.0.0.1:9100/healthz", commit_after_s: 30, timeout_s: 120}
  reload: {command: [systemctl, restart, edge-runtime]}   # or {pid_file: ..., signal: HUP}

examples:
  edge-runtime agent --config /etc/edge-runtime/agent.yaml
  edge-runtime agent --config agent.yaml --once --json     # act on the current announcement, then exit
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``agent``."""
    parser.add_argument("--config", required=True, metavar="YAML", help="the agent config (see above)")
    parser.add_argument("--once", action="store_true",
                        help="wait for the retained announcement, act on it, and exit")
    parser.add_argument("--max-seconds", type=float, metavar="S", help="exit after this long (default: run forever)")
    parser.add_argument("--json", action="store_true", help="print each status as a JSON line on stdout")


def run(args: argparse.Namespace) -> int:
    """Run the agent until SIGTERM/SIGINT."""
    from edge_runtime.agent.config import load_agent_config
    from edge_runtime.agent.core import Agent
    from edge_runtime.agent.mqtt_link import AgentLink

    cfg = load_agent_config(args.config)
    link = AgentLink(cfg.mqtt.url, cfg.mqtt.topic_prefix, cfg.fleet, cfg.group, cfg.device_id, cfg.mqtt.keepalive_s,
                     cfg.mqtt.auth())

    def report(status: dict) -> None:
        link.report(status)
        if args.json:
            print(json.dumps(status, sort_keys=True), flush=True)
        else:
            rel = f"release {status['release']}: " if status["release"] is not None else ""
            print(f"{cfg.device_id}: {rel}{status['state']}" + (f" ({status['reason']})" if status["reason"] else ""),
                  flush=True)

    agent = Agent(cfg, report=report)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_a: stop.set())
    link.start(agent.offer)
    try:
        if args.once:
            if agent.state.pending is not None:
                agent.health_check()
            a = agent.take(args.max_seconds or 30.0)
            if a is not None:
                result = agent.handle(a)
                if not args.json:
                    print(f"{cfg.device_id}: {result}")
        else:
            agent.run(stop, args.max_seconds)
    finally:
        link.stop()
    return 0
