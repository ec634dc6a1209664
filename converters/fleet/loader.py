"""Read a fleet file, merge its three layers and validate everything, with precise errors.

Every problem is reported as ``FILE:LINE: path.to.field: problem`` and all problems are
reported at once. Checks beyond the schema: profiles load, files exist, ``serve`` and
``devices.*.group`` name things that exist, microcontroller groups have no daemon, and
each group's and device's merged daemon settings validate as a ``device.yaml``.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml
from pydantic import ValidationError

from converters.fleet.schema import ConvertSettings, FleetFile, ModelSpec
from device_profiles import BOARDS_DIR, DeviceProfile, load_profile
from edge_runtime.config_errors import field_message, read_errors, yaml_problem
from edge_runtime.errors import ConfigError
from edge_runtime.safe_yaml import check_regular_file, parse_yaml_text

Loc = tuple[Union[str, int], ...]
_DISCRIMINATOR_TAGS = {"serial", "tcp", "file", "jsonl", "reply", "mqtt", "argmax", "threshold", "smooth", "topk"}


# --------------------------------------------------------------------------- YAML with line numbers
def _positions(node: yaml.Node, loc: Loc, out: dict[Loc, int]) -> None:
    out.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else str(k.value)
            out[loc + (key,)] = k.start_mark.line + 1
            _positions(v, loc + (key,), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _positions(v, loc + (i,), out)


def read_yaml_with_lines(path: str) -> tuple[Any, dict[Loc, int]]:
    """Parse YAML and map each key path to its line number."""
    check_regular_file(path, "fleet file")
    with read_errors(path, "fleet file", text_hint="a fleet file is UTF-8 YAML", cannot_read="cannot read"):
        text = Path(path).read_text(encoding="utf-8")
    data = parse_yaml_text(text, path, allow_aliases=True, line_prefix=True)  # bounded before the walk below
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        pos, problem = yaml_problem(exc)
        where = f":{pos[0]}" if pos else ""
        raise ConfigError(f"{path}{where}: not valid YAML: {problem}") from None
    lines: dict[Loc, int] = {}
    if node is not None:
        _positions(node, (), lines)
    return data, lines


# --------------------------------------------------------------------------- problems
@dataclass
class Problem:
    """One validation problem."""

    loc: Loc
    message: str

    def format(self, path: str, lines: dict[Loc, int]) -> str:
        """``FILE:LINE: a.b.c: message`` (line of the deepest key that exists)."""
        line = None
        for n in range(len(self.loc), -1, -1):
            line = lines.get(self.loc[:n])
            if line is not None:
                break
        where = f"{path}:{line}" if line else path
        dotted = ".".join(str(p) for p in self.loc) or "(top level)"
        return f"{where}: {dotted}: {self.message}"


def _pydantic_problems(exc: ValidationError, prefix: Loc = ()) -> list[Problem]:
    out = []
    for e in exc.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p in _DISCRIMINATOR_TAGS))
        msg, special = field_message(e, unknown="unknown key (not allowed here; check the spelling)",
                                     missing="required key is missing")
        if not special and msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if "input" in e and isinstance(e["input"], (str, int, float, bool)) and e["type"] != "extra_forbidden":
            msg = f"{msg} (got {e['input']!r})"
        out.append(Problem(prefix + loc, msg))
    return out


# --------------------------------------------------------------------------- merging
def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``: mappings merge key by key, everything else is replaced."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _has_path(d: Any, loc: Loc) -> bool:
    for p in loc:
        if isinstance(d, dict) and p in d:
            d = d[p]
        elif isinstance(d, list) and isinstance(p, int) and 0 <= p < len(d):
            d = d[p]
        else:
            return False
    return True


def _merge_convert(*layers: ConvertSettings) -> dict[str, Any]:
    out: dict[str, Any] = {"formats": ["tflite"], "calibration_samples": None, "options": {}}
    for layer in layers:
        if layer.formats is not None:
            out["formats"] = list(layer.formats)
        if layer.calibration_samples is not None:
            out["calibration_samples"] = layer.calibration_samples
        out["options"] = deep_merge(out["options"], layer.options)
    return out


# --------------------------------------------------------------------------- resolved fleet
@dataclass
class ResolvedModel:
    """A model with every path absolute and the convert settings merged."""

    name: str
    spec: ModelSpec
    source: Path
    calibration: Optional[Path]
    labels: Optional[list[str]]
    labels_file: Optional[Path]
    test_input: Optional[Path]
    convert: dict[str, Any]


@dataclass
class ResolvedGroup:
    """A group with its profile loaded and its daemon settings merged (defaults -> group)."""

    name: str
    profile: DeviceProfile
    profile_ref: str
    profile_is_shipped: bool
    models: dict[str, ResolvedModel]
    serve: Optional[str]
    daemon: dict[str, Any]
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def profile_sha256(self) -> str:
        """Hash of the profile's canonical JSON (changes when any value changes)."""
        return hashlib.sha256(json.dumps(self.profile.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


@dataclass
class Fleet:
    """A validated fleet file."""

    path: Path
    name: str
    file: FleetFile
    groups: dict[str, ResolvedGroup]
    daemon_validated: bool


def _daemon_config_model():  # type: ignore[no-untyped-def]
    try:
        from edge_runtime.daemon.config import DaemonConfig
    except Exception:  # noqa: BLE001 - the daemon is optional; then daemon settings are checked at serve time
        return None
    return DaemonConfig


def _read_labels(p: Path) -> list[str]:
    return [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def device_config(group: ResolvedGroup, daemon: dict[str, Any], model_file: Optional[str]) -> dict[str, Any]:
    """The ``device.yaml`` mapping for merged daemon settings (paths relative to the bundle)."""
    cfg = copy.deepcopy(daemon)
    serve = group.models[group.serve] if group.serve else None
    model = dict(cfg.get("model") or {})
    model["path"] = model_file or "MODEL"
    if serve is not None:
        if serve.labels is not None and "labels" not in model:
            model["labels"] = serve.labels
        if serve.test_input is not None and "test_input" not in model:
            model["test_input"] = f"inputs/{serve.test_input.name}"
        if serve.spec.preprocess is not None and "preprocess" not in cfg:
            cfg["preprocess"] = copy.deepcopy(serve.spec.preprocess)
        if serve.spec.postprocess is not None and "postprocess" not in cfg:
            cfg["postprocess"] = copy.deepcopy(serve.spec.postprocess)
    cfg["model"] = model
    cfg.setdefault("profile", group.profile_ref if group.profile_is_shipped else "profile.yaml")
    return cfg


def load_fleet(path: Union[str, os.PathLike]) -> Fleet:
    """Read and validate a fleet file; raise one :class:`ConfigError` listing every problem."""
    p = os.fspath(path)
    data, lines = read_yaml_with_lines(p)
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a fleet file must be a YAML mapping with 'name' and 'groups'")
    try:
        ff = FleetFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_report(p, lines, _pydantic_problems(exc))) from None
    base = Path(p).resolve().parent
    problems: list[Problem] = []
    daemon_model = _daemon_config_model()
    groups: dict[str, ResolvedGroup] = {}

    def rel(s: str, loc: Loc, what: str, must_be_file: bool = True) -> Optional[Path]:
        q = Path(s) if Path(s).is_absolute() else base / s
        if not q.exists():
            problems.append(Problem(loc, f"{what} '{s}' does not exist (looked for {q})"))
            return None
        if must_be_file and not q.is_file():
            problems.append(Problem(loc, f"{what} '{s}' is not a file"))
            return None
        return q

    for gname, g in ff.groups.items():
        gloc: Loc = ("groups", gname)
        ref = g.profile or ff.defaults.profile
        if ref is None:
            problems.append(Problem(gloc, "no profile: set groups.<name>.profile or defaults.profile"))
            continue
        ploc = gloc + ("profile",) if g.profile else ("defaults", "profile")
        is_path = ref.endswith((".yaml", ".yml")) or "/" in ref or os.sep in ref
        shipped = not is_path and (BOARDS_DIR / f"{ref}.yaml").exists()
        try:
            profile = load_profile(ref if not is_path else str(base / ref) if not Path(ref).is_absolute() else ref)
        except ConfigError as exc:
            problems.append(Problem(ploc, str(exc).replace("\n", "; ")))
            continue
        models: dict[str, ResolvedModel] = {}
        for mname, m in g.models.items():
            mloc = gloc + ("models", mname)
            src = rel(m.source, mloc + ("source",), "source model")
            if src is not None and src.suffix.lower() not in (".onnx", ".tflite"):
                problems.append(Problem(mloc + ("source",), f"source model must be .onnx or .tflite, got '{src.name}'"))
            calib = rel(m.calibration, mloc + ("calibration",), "calibration data", False) if m.calibration else None
            if not m.prebuilt and m.calibration is None:
                problems.append(Problem(mloc, "calibration data is required to quantize the model "
                                              "(or set prebuilt: true for an already converted model)"))
            labels: Optional[list[str]] = None
            labels_file = None
            if isinstance(m.labels, str):
                labels_file = rel(m.labels, mloc + ("labels",), "labels file")
                if labels_file is not None:
                    try:
                        labels = _read_labels(labels_file)
                    except UnicodeDecodeError:
                        problems.append(Problem(mloc + ("labels",), "labels file is not UTF-8 text"))
            elif m.labels is not None:
                labels = list(m.labels)
            test_input = rel(m.test_input, mloc + ("test_input",), "test input") if m.test_input else None
            conv = _merge_convert(ff.defaults.convert, g.convert, m.convert)
            if profile.microcontroller and "tflite" not in conv["formats"]:
                problems.append(Problem(mloc + ("convert", "formats"),
                                        f"profile '{profile.name}' is a microcontroller: TFLite Micro needs 'tflite'"))
            if src is not None:
                models[mname] = ResolvedModel(mname, m, src, calib, labels, labels_file, test_input, conv)
        serve = g.serve
        if serve is not None and serve not in g.models:
            problems.append(Problem(gloc + ("serve",), f"no model named '{serve}' in this group "
                                                        f"(models: {', '.join(g.models)})"))
            serve = None
        elif serve is None and len(g.models) == 1:
            serve = next(iter(g.models))
        elif serve is None and not profile.microcontroller:
            problems.append(Problem(gloc, f"several models ({', '.join(g.models)}): say which one the daemon "
                                          f"serves with 'serve'"))
        daemon = deep_merge(ff.defaults.daemon, g.daemon)
        if profile.microcontroller and g.daemon:
            problems.append(Problem(gloc + ("daemon",), f"profile '{profile.name}' is a microcontroller (no Python): "
                                                        f"it runs no daemon; remove this section"))
        rg = ResolvedGroup(gname, profile, ref, shipped, models, serve, daemon)
        groups[gname] = rg
        if not profile.microcontroller and daemon_model is not None and serve in models:
            _check_daemon(daemon_model, rg, daemon, [("defaults", "daemon"), gloc + ("daemon",)], data, problems,
                          gloc + ("daemon",))

    for dev_id, dev in ff.devices.items():
        dloc: Loc = ("devices", dev_id)
        if dev.group not in ff.groups:
            problems.append(Problem(dloc + ("group",), f"no group named '{dev.group}' (groups: {', '.join(ff.groups)})"))
            continue
        rg = groups.get(dev.group)
        if rg is None:
            continue
        if rg.profile.microcontroller:
            if dev.daemon:
                problems.append(Problem(dloc + ("daemon",), f"group '{dev.group}' is a microcontroller group: "
                                                            f"no daemon settings"))
            rg.devices[dev_id] = {}
            continue
        merged = deep_merge(rg.daemon, dev.daemon)
        rg.devices[dev_id] = merged
        if daemon_model is not None and rg.serve in rg.models:
            _check_daemon(daemon_model, rg, merged,
                          [("defaults", "daemon"), ("groups", dev.group, "daemon"), dloc + ("daemon",)],
                          data, problems, dloc + ("daemon",))
    if problems:
        raise ConfigError(_report(p, lines, problems))
    return Fleet(Path(p).resolve(), ff.name, ff, groups, daemon_model is not None)


def _check_daemon(model_cls: Any, group: ResolvedGroup, daemon: dict[str, Any], layers: list[Loc], raw: Any,
                  problems: list[Problem], fallback: Loc) -> None:
    """Validate merged daemon settings; blame the last layer that set the offending key."""
    cfg = device_config(group, daemon, "models/model.tflite")
    cfg.setdefault("source", {"type": "file", "path": "-"})
    try:
        model_cls.model_validate(cfg)
    except ValidationError as exc:
        for pr in _pydantic_problems(exc):
            where = _blame(raw, layers, pr.loc, fallback)
            if any(q.loc == where and q.message.startswith(pr.message) for q in problems):
                continue  # inherited from the group: reported once, there
            problems.append(Problem(where, f"{pr.message} (daemon settings for group '{group.name}'"
                                           f"{'' if fallback[0] == 'groups' else ', device ' + str(fallback[1])})"))


def _blame(raw: Any, layers: list[Loc], loc: Loc, fallback: Loc) -> Loc:
    """The path to blame: the last layer that sets ``loc`` itself, else the one setting its longest prefix."""
    for n in range(len(loc), 0, -1):
        for layer in reversed(layers):
            if _has_path(raw, layer + loc[:n]):
                return layer + loc
    return fallback + loc


def _report(path: str, lines: dict[Loc, int], problems: list[Problem]) -> str:
    n = len(problems)
    head = f"{path}: invalid fleet file ({n} problem{'s' if n != 1 else ''})"
    return "\n".join([head] + ["  " + pr.format(path, lines) for pr in problems])
