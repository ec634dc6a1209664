"""``edge-convert fleet validate|build|keygen|publish|status``: fleet files to signed bundles, rolled out in waves."""
from __future__ import annotations

import argparse
import json
import os
from typing import Any

NAME = "fleet"
HELP = "validate a fleet file, build signed per-group model bundles, or make a signing key"
DESCRIPTION = """\
A fleet file (YAML) says which model goes to which device group, with which runtime
settings, in three layers: defaults -> groups -> devices (each overrides the one before;
mappings merge key by key, lists are replaced). See docs/fleet.md and
examples/fleet/fleet.yaml.

subcommands:
  validate FLEET.yaml            check everything; errors give file:line, the path to the
                                 field and the problem
  build FLEET.yaml -o DIST       convert each (model, profile) pair once (cached by content
                                 hash: an unchanged second build converts nothing) and write
                                 DIST/<group>.tar.gz: models, device.yaml, devices/<id>.yaml,
                                 reports, manifest.json (sha256 + size of every file, profile,
                                 converter version, source hashes, build time) and
                                 manifest.sig (Ed25519)
  publish DIST --http-root DIR --base-url URL --mqtt URL --sign-key KEY
                                 place the bundles and per-device files where an HTTP
                                 server serves them, announce each release (signed,
                                 retained) to a canary wave, widen it (canary -> 25% ->
                                 100%) while failures stay within --max-failures, and
                                 halt the rollout otherwise
  status --mqtt URL              per group and release: how many devices are downloading,
                                 installed, committed, rolled back or failed
  keygen -o DIR                  write DIR/fleet.key (private, keep it off devices) and
                                 DIR/fleet.pub (give it to devices: edge-runtime verify
                                 --pubkey)

examples:
  edge-convert fleet keygen -o keys/
  edge-convert fleet validate examples/fleet/fleet.yaml
  edge-convert fleet build examples/fleet/fleet.yaml -o dist/ --jobs 2 --sign-key keys/fleet.key
  edge-convert fleet publish dist/ --http-root /srv/www/bundles --base-url https://cdn.example/bundles \
      --mqtt mqtt://broker:1883 --sign-key keys/fleet.key --canary 5 --max-failures 2
  edge-convert fleet status --mqtt mqtt://broker:1883 --json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The nested subcommands and their options."""
    sub = parser.add_subparsers(dest="fleet_command", metavar="SUBCOMMAND")
    sub.required = True
    fmt = argparse.RawDescriptionHelpFormatter

    v = sub.add_parser("validate", help="check a fleet file and print what it resolves to", formatter_class=fmt,
                       description="Validate FLEET.yaml: the schema (unknown keys are errors), profiles, files, "
                                   "model names, device groups, and every group's and device's merged daemon "
                                   "settings. All problems are listed, each as FILE:LINE: path.to.field: problem.")
    v.add_argument("fleet", metavar="FLEET.yaml", help="the fleet file")
    v.add_argument("--json", action="store_true", help="print the resolved groups as JSON")

    b = sub.add_parser("build", help="build one bundle per group", formatter_class=fmt,
                       description="Convert every (model, profile) pair once and write one .tar.gz bundle per "
                                   "group into DIST, plus DIST/index.json. Conversions are cached by the SHA-256 "
                                   "of the source model, calibration data, profile, settings and converter code: "
                                   "a second build with nothing changed does no conversion. Set "
                                   "SOURCE_DATE_EPOCH for byte-identical bundles.")
    b.add_argument("fleet", metavar="FLEET.yaml", help="the fleet file")
    b.add_argument("-o", "--output", required=True, metavar="DIST", help="directory for the bundles")
    b.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                   help="conversions to run at once, in worker processes (default 1)")
    b.add_argument("--sign-key", metavar="KEY",
                   help="Ed25519 private key (from 'fleet keygen') to sign each manifest; without it the bundles "
                        "are unsigned, and devices configured with a public key refuse them")
    b.add_argument("--cache-dir", metavar="DIR",
                   help="conversion cache (default $EDGE_CONVERT_CACHE or ~/.cache/edge-convert/fleet)")
    b.add_argument("--group", action="append", metavar="NAME", help="build only this group (repeatable)")
    b.add_argument("--release", type=int, metavar="N",
                   help="release number for every built group (must be above each group's last one; default: the "
                        "next number from the release state file)")
    b.add_argument("--release-state", metavar="FILE",
                   help="the file that remembers each group's last release number (default DIST/releases.json)")
    b.add_argument("--device-files", choices=("auto", "bundle", "separate"), default="auto",
                   help="per-device configs inside the bundle (devices/<id>.yaml) or as one small signed file per "
                        "device in DIST/<group>.devices/<id>.json; auto: separate above 100 devices")
    b.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar (default: when stderr is a terminal)")
    b.add_argument("--json", action="store_true", help="print the build summary as JSON")

    pub = sub.add_parser("publish", help="stage bundles on an HTTP root and roll them out in waves over MQTT",
                         formatter_class=fmt, description=(
        "Copy each group's bundle (and its signed per-device files) to HTTP_ROOT/<fleet>/<group>/<release>/, then "
        "announce the release on the retained, signed topic PREFIX/<fleet>/<group>/announce to the canary "
        "percentage of devices (a stable hash of the device id). When every device of the wave has committed or "
        "failed and failures are within --max-failures, widen to the next wave; otherwise re-announce it halted "
        "and exit with status 1.\n\nexamples:\n"
        "  edge-convert fleet publish dist/ --http-root /var/www/html/bundles --base-url http://10.0.0.2/bundles "
        "\\\n      --mqtt mqtt://10.0.0.2:1883 --sign-key keys/fleet.key --canary 10 --waves 25,100\n"
        "  edge-convert fleet publish dist/ --http-root www/ --base-url http://host/ --stage-only --json"))
    pub.add_argument("dist", metavar="DIST", help="the output of 'fleet build' (with index.json)")
    pub.add_argument("--http-root", required=True, metavar="DIR", help="the directory the HTTP server serves")
    pub.add_argument("--base-url", required=True, metavar="URL", help="the URL of --http-root as devices see it")
    pub.add_argument("--mqtt", metavar="URL", help="mqtt://HOST:PORT of the broker (required unless --stage-only)")
    pub.add_argument("--sign-key", metavar="KEY", help="the fleet's private key, to sign the announcements")
    pub.add_argument("--canary", type=float, default=10.0, metavar="PERCENT", help="the first wave (default 10)")
    pub.add_argument("--waves", default="25,100", metavar="P,P", help="the waves after the canary (default 25,100)")
    pub.add_argument("--max-failures", type=int, default=0, metavar="N",
                     help="halt when more than N devices fail or roll back (default 0)")
    pub.add_argument("--wave-timeout", type=float, default=600.0, metavar="S",
                     help="halt when a wave's devices have not all finished after S seconds (default 600)")
    pub.add_argument("--group", action="append", metavar="NAME", help="publish only this group (repeatable)")
    pub.add_argument("--topic-prefix", default="edge-runtime/fleet", metavar="PREFIX")
    pub.add_argument("--stage-only", action="store_true", help="place the files, announce nothing")
    pub.add_argument("--json", action="store_true", help="print the outcome as JSON")
    _mqtt_login_arguments(pub)

    st = sub.add_parser("status", help="count devices per release and state from the agents' status topics",
                        formatter_class=fmt, description=(
        "Read the retained status of every agent and the announcements, and print per group and release how many "
        "devices are downloading, installed, checking, committed, rolled back or failed.\n\nexamples:\n"
        "  edge-convert fleet status --mqtt mqtt://broker:1883\n"
        "  edge-convert fleet status --mqtt mqtt://broker:1883 --group line-cameras --json"))
    st.add_argument("--mqtt", required=True, metavar="URL", help="mqtt://HOST:PORT of the broker")
    st.add_argument("--fleet", default="+", help="only this fleet")
    st.add_argument("--group", default="+", help="only this group")
    st.add_argument("--topic-prefix", default="edge-runtime/fleet", metavar="PREFIX")
    st.add_argument("--wait", type=float, default=3.0, metavar="S", help="how long to collect (default 3 s at most)")
    st.add_argument("--json", action="store_true", help="print the summary as JSON")
    _mqtt_login_arguments(st)

    k = sub.add_parser("keygen", help="write an Ed25519 key pair for signing bundles", formatter_class=fmt,
                       description="Write DIR/NAME.key (PKCS#8 PEM, mode 0600: keep it on the build host) and "
                                   "DIR/NAME.pub (SubjectPublicKeyInfo PEM: install it on devices).")
    k.add_argument("-o", "--output", required=True, metavar="DIR", help="directory for the key files")
    k.add_argument("--name", default="fleet", help="file name stem (default: fleet)")
    k.add_argument("--force", action="store_true", help="overwrite existing key files")


def _mqtt_login_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("broker login (TLS and password)")
    g.add_argument("--mqtt-username", metavar="NAME")
    g.add_argument("--mqtt-password-env", metavar="VAR", help="environment variable holding the password")
    g.add_argument("--mqtt-password-file", metavar="FILE", help="file holding the password (first line)")
    g.add_argument("--mqtt-ca", metavar="PEM", help="CA of the broker's certificate (turns TLS on)")
    g.add_argument("--mqtt-cert", metavar="PEM", help="client certificate")
    g.add_argument("--mqtt-key", metavar="PEM", help="the client certificate's key")


def _mqtt_auth(args: argparse.Namespace) -> Any:
    from edge_runtime.agent.config import MqttSettings
    from edge_runtime.errors import ConfigError

    tls = {"ca_file": args.mqtt_ca, "cert_file": args.mqtt_cert, "key_file": args.mqtt_key} if args.mqtt_ca else None
    if (args.mqtt_cert or args.mqtt_key) and not args.mqtt_ca:
        raise ConfigError("--mqtt-cert and --mqtt-key need --mqtt-ca")
    try:
        return MqttSettings(username=args.mqtt_username, password_env=args.mqtt_password_env,
                            password_file=args.mqtt_password_file, tls=tls).auth()
    except ValueError as exc:
        raise ConfigError(f"broker login: {str(exc).splitlines()[-1]}") from None


def _validate(args: argparse.Namespace) -> int:
    from converters.fleet.loader import load_fleet

    fleet = load_fleet(args.fleet)
    summary: dict[str, Any] = {"fleet": fleet.name, "groups": {}}
    for g in fleet.groups.values():
        summary["groups"][g.name] = {
            "profile": g.profile.name, "microcontroller": g.profile.microcontroller,
            "models": {m.name: {"source": str(m.source), "prebuilt": m.spec.prebuilt, "formats": m.convert["formats"]}
                       for m in g.models.values()},
            "serve": g.serve, "devices": sorted(g.devices),
        }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{args.fleet}: valid fleet '{fleet.name}': {len(fleet.groups)} group(s), "
          f"{sum(len(g.devices) for g in fleet.groups.values())} device(s)")
    for name, g in summary["groups"].items():
        kind = "microcontroller, sizing" if g["microcontroller"] else f"serves {g['serve']}"
        print(f"  {name}: profile {g['profile']} ({kind}); models: {', '.join(g['models'])}; "
              f"devices: {', '.join(g['devices']) or '-'}")
    if not fleet.daemon_validated:
        print("  note: daemon settings were not checked (edge_runtime.daemon is not installed)")
    return 0


def _build(args: argparse.Namespace) -> int:
    from converters.fleet.build import build_fleet
    from edge_runtime.errors import ConfigError

    if args.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {args.jobs}")
    r = build_fleet(args.fleet, args.output, jobs=args.jobs, sign_key=args.sign_key, cache_dir=args.cache_dir,
                    progress=args.progress, groups=args.group, release=args.release,
                    release_state=args.release_state, device_files=args.device_files)
    if args.json:
        print(json.dumps({"conversions": r.conversions, "cache_hits": r.cache_hits, "seconds": round(r.seconds, 3),
                          "converter_version": r.converter_version,
                          "bundles": [{"group": b.group, "path": str(b.path), "sha256": b.sha256, "size": b.size,
                                       "profile": b.profile, "signed_by": b.signed_by, "files": b.files,
                                       "release": b.release, "devices": b.devices,
                                       "device_files": str(b.device_files) if b.device_files else None}
                                      for b in r.bundles]}, indent=2))
        return 0
    print(f"converted {r.conversions} model(s), {r.cache_hits} from cache, in {r.seconds:.1f} s "
          f"(converter {r.converter_version})")
    for b in r.bundles:
        sig = f"signed by {b.signed_by}" if b.signed_by else "UNSIGNED"
        shown = os.path.relpath(b.path)
        shown = str(b.path) if shown.startswith("..") else shown
        extra = f"  + {b.devices} signed device files in {b.device_files.name}/" if b.device_files else ""
        print(f"  {shown}  release {b.release}  {b.size:,} bytes  {b.files} files  profile {b.profile}  {sig}{extra}")
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from converters.fleet.keys import keygen

    priv, pub, kid = keygen(args.output, args.name, args.force)
    print(f"private key: {priv} (mode 0600; keep it on the build host)")
    print(f"public key:  {pub} (key id {kid}; install on devices, use with edge-runtime verify --pubkey)")
    return 0


def _publish(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from converters.fleet.publish import publish
    from edge_runtime.errors import ConfigError

    if not args.stage_only and not args.mqtt:
        raise ConfigError("give --mqtt URL (or --stage-only to place the files without announcing)")
    if not args.stage_only and not args.sign_key:
        raise ConfigError("give --sign-key KEY: agents refuse unsigned announcements")
    out = publish(args.dist, args.http_root, args.base_url, args.mqtt or "", sign_key=args.sign_key,
                  canary=args.canary, waves=args.waves, max_failures=args.max_failures,
                  wave_timeout_s=args.wave_timeout, prefix=args.topic_prefix, groups=args.group,
                  stage_only=args.stage_only, log=None if not args.json else (lambda _m: None),
                  auth=_mqtt_auth(args))
    halted = any(r.halted for r in out)
    if args.json:
        print(json.dumps([asdict(r) for r in out], indent=2))
    else:
        for r in out:
            s = r.staged
            state = "staged" if args.stage_only else ("HALTED: " + r.reason if r.halted else "rolled out to 100%")
            print(f"{s.group}: release {s.release}: {state} ({r.seconds:.1f} s; {s.url})")
    return 1 if halted else 0


def _status(args: argparse.Namespace) -> int:
    from converters.fleet.status import fleet_status, format_summary

    summary = fleet_status(args.mqtt, args.topic_prefix, args.fleet, args.group, args.wait, _mqtt_auth(args))
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def run(args: argparse.Namespace) -> int:
    """Dispatch to the nested subcommand."""
    return {"validate": _validate, "build": _build, "keygen": _keygen, "publish": _publish,
            "status": _status}[args.fleet_command](args)
