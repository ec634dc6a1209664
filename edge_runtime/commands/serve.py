"""``edge-runtime serve``: run the inference daemon."""
from __future__ import annotations

import argparse
import asyncio
from typing import Any

NAME = "serve"
HELP = "serve a model to devices over serial, TCP, a file or stdin (the on-device daemon)"
DESCRIPTION = """\
Serve a model as a long-running daemon: frames come in from a serial port, a TCP
socket, a file or stdin, go through the model, and results go to JSON Lines, back
to the device, or to MQTT. Serial and TCP links use the COBS + CRC-32 framing of
docs/framing.md.

  edge-runtime serve --config device.yaml
  edge-runtime serve --model kws.tflite --source tcp://127.0.0.1:7000 --sink jsonl:-
  edge-runtime serve --model kws.tflite --source serial:///dev/ttyUSB0?baud=921600 \\
      --sink reply --sink mqtt://127.0.0.1:1883/kws --health 127.0.0.1:9100

Flags override the config file; with --model no file is needed. SIGTERM drains the
queued work and exits 0. SIGHUP (systemctl reload) re-reads the whole config (model,
source, sinks, topics, pre- and postprocessing) and applies it once everything new has
started and the new model has passed a test inference; otherwise the old configuration
keeps serving and the reason is logged and shown in /metrics. Pipeline sizes, the health
listener and the profile change only at restart. Without a config file, SIGHUP reloads
the model file. Health and Prometheus metrics: GET /healthz and /metrics.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``serve``."""
    p.add_argument("--config", metavar="YAML", help="daemon config file (see examples/device.yaml)")
    p.add_argument("--model", metavar="PATH", help="model file (.tflite or .onnx); overrides model.path")
    p.add_argument("--backend", help="litert, tflite, onnx, micro or auto (default: the config's, else auto)")
    p.add_argument("--profile", help="device profile name or YAML; its inference RAM budget is enforced at start")
    p.add_argument("--source", metavar="URL",
                   help="tcp://HOST:PORT (binds 127.0.0.1 unless another host is given), "
                        "serial:///dev/ttyX?baud=N, serial:loop://, file:PATH (.npy samples or a framed capture), "
                        "file:- (framed stream on stdin)")
    p.add_argument("--sink", metavar="URL", action="append",
                   help="jsonl:PATH, jsonl:- (stdout), reply (back to the device over its link) or "
                        "mqtt://HOST:PORT/TOPIC; repeat for several; replaces the config's sinks")
    p.add_argument("--health", metavar="HOST:PORT|unix:PATH",
                   help="serve /healthz and /metrics here (127.0.0.1:0 picks a free port)")
    p.add_argument("--preprocess", metavar="PRESET|YAML",
                   help="preprocessing chain run on each payload (a preset such as kws, or a YAML file); "
                        "audio and sensor chains take int16 sample chunks per frame")
    p.add_argument("--labels", metavar="A,B,...", help="comma-separated class names for the argmax label")
    p.add_argument("--queue-size", type=int, help="bounded request queue length (default 64)")
    p.add_argument("--overload", choices=["drop_oldest", "drop_newest", "block"],
                   help="what to do when the queue is full (default drop_oldest; each has a counter)")
    p.add_argument("--max-batch-size", type=int, help="most requests per worker call (default 8)")
    p.add_argument("--max-queue-delay-ms", type=float,
                   help="how long a request may wait for others to fill its batch (Triton's meaning; default 0)")
    p.add_argument("--watch", action="store_true", help="reload the model when its file changes")
    p.add_argument("--bundle-root", metavar="DIR",
                   help="serve the active release installed here by 'edge-runtime verify --install': every file "
                        "is checked against the signed manifest before the model loads (replaces --config)")
    p.add_argument("--pubkey", metavar="KEY", help="the fleet's Ed25519 public key file (with --bundle-root)")
    p.add_argument("--device-id", metavar="ID", help="use this device's own device.yaml from the bundle, if it has one")
    p.add_argument("--allow-unsigned", action="store_true",
                   help="with --bundle-root and no --pubkey: accept a bundle without a signature (hashes still checked)")


def build_config(args: argparse.Namespace) -> Any:
    """The validated config from ``--config`` and the flags."""
    from edge_runtime.daemon.config import load_config, parse_sink_url, parse_source_url

    over: dict[str, Any] = {}
    model: dict[str, Any] = {}
    if args.model:
        model["path"] = args.model
    if args.backend:
        model["backend"] = args.backend
    if args.labels:
        model["labels"] = [s.strip() for s in args.labels.split(",")]
    if args.watch:
        model["watch"] = True
    if model:
        over["model"] = model
    if args.source:
        over["source"] = parse_source_url(args.source)
    if args.sink:
        over["sinks"] = [parse_sink_url(s) for s in args.sink]
    if args.health:
        over["health"] = {"listen": args.health}
    if args.profile:
        over["profile"] = args.profile
    if args.preprocess:
        over["preprocess"] = args.preprocess
    pipe = {k: v for k, v in (("queue_size", args.queue_size), ("overload", args.overload),
                              ("max_batch_size", args.max_batch_size),
                              ("max_queue_delay_ms", args.max_queue_delay_ms)) if v is not None}
    if pipe:
        over["pipeline"] = pipe
    return load_config(bundle_config(args) or args.config, over)


def bundle_config(args: argparse.Namespace) -> Any:
    """With ``--bundle-root``: verify the installed release and return its device.yaml path; else None."""
    if not getattr(args, "bundle_root", None):
        return None
    from edge_runtime.bundle import installed_device_config, load_public_key
    from edge_runtime.errors import ConfigError

    if args.config:
        raise ConfigError("give either --config or --bundle-root, not both (a bundle carries its own device.yaml)")
    if not args.pubkey and not args.allow_unsigned:
        raise ConfigError("--bundle-root needs --pubkey KEY (or --allow-unsigned to accept unsigned bundles)")
    key = load_public_key(args.pubkey) if args.pubkey else None
    return installed_device_config(args.bundle_root, key, args.device_id, require_signature=key is not None)


def run(args: argparse.Namespace) -> int:
    """Start the daemon and serve until SIGTERM."""
    from edge_runtime.daemon.pipeline import Daemon

    from edge_runtime.errors import EdgeRuntimeError

    cfg = build_config(args)
    reread = (lambda: build_config(args)) if (args.config or getattr(args, "bundle_root", None)) else None
    try:
        return asyncio.run(Daemon(cfg, reread=reread).run())
    except MemoryError:
        raise EdgeRuntimeError("out of memory (check the memory limit: ulimit -v, or the cgroup's memory.max)") from None
    except RuntimeError as exc:
        if "can't start new thread" in str(exc):
            raise EdgeRuntimeError("cannot start a thread: the process is out of memory or threads "
                                   "(check ulimit -v and -u)") from None
        raise
