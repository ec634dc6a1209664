"""``fleet build``: convert each (model, profile) pair once, then write one signed bundle per group.

1. Load and validate the fleet file (:mod:`converters.fleet.loader`).
2. Make one :class:`~converters.fleet.steps.ConversionJob` per distinct cache key; groups
   that share a model and a profile share its conversion.
3. Run the jobs that miss the cache, ``--jobs`` at a time in worker processes.
4. For each group, gather the converted models, their reports, labels, the profile, the
   group's ``device.yaml`` and each device's ``devices/<id>.yaml``; write the manifest,
   sign it, and write ``DIST/<group>.tar.gz``. ``DIST/index.json`` lists the bundles.
5. Each bundle gets the group's next release number (:mod:`converters.fleet.release`).
   A group with more than :data:`INLINE_DEVICES_MAX` devices (or ``device_files="separate"``)
   keeps per-device configs out of its bundle: one small signed file per device in
   ``DIST/<group>.devices/<id>.json`` (:mod:`edge_runtime.agent.device_file`).
"""
from __future__ import annotations

import concurrent.futures as cf
import datetime as _dt
import hashlib
import json
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from converters.fleet.archive import Content, file_entries, write_bundle
from converters.fleet.cache import ConversionCache, cache_key, code_hash, sha256_file, sha256_path
from converters.fleet.keys import Signer
from converters.fleet.loader import Fleet, ResolvedGroup, device_config, load_fleet
from converters.fleet.release import STATE_NAME, locked_state
from converters.fleet.steps import DEFAULT_CONVERTER, ConversionJob, run_job
from edge_runtime import __version__ as RUNTIME_VERSION
from edge_runtime.bundle import BUNDLE_FORMAT, FORMAT_VERSION, canonical_json
from edge_runtime.errors import BudgetExceededError, EdgeRuntimeError

_ROOT = Path(__file__).resolve().parents[2]
#: Above this many devices a group's per-device configs travel as separate signed files.
INLINE_DEVICES_MAX = 100
DEVICE_FILES = ("auto", "bundle", "separate")


def converter_version() -> str:
    """``<package version>+<first 12 hex of the converter code hash>``."""
    roots = [_ROOT / "converters", _ROOT / "edge_runtime" / "arena", _ROOT / "edge_runtime" / "formats"]
    return f"{RUNTIME_VERSION}+{code_hash(roots, exclude=('converters/fleet', 'converters/commands'))[:12]}"


def default_cache_dir() -> Path:
    """``$EDGE_CONVERT_CACHE``, else ``$XDG_CACHE_HOME/edge-convert/fleet`` (``~/.cache/...``)."""
    env = os.environ.get("EDGE_CONVERT_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edge-convert" / "fleet"


@dataclass
class BundleResult:
    """One written bundle."""

    group: str
    path: Path
    sha256: str
    size: int
    profile: str
    signed_by: Optional[str]
    files: int
    release: Optional[int] = None
    device_files: Optional[Path] = None
    devices: int = 0


@dataclass
class BuildResult:
    """What a build did."""

    bundles: list[BundleResult]
    conversions: int
    cache_hits: int
    seconds: float
    converter_version: str
    jobs: list[ConversionJob] = field(default_factory=list)


def _build_time(explicit: Optional[int]) -> int:
    if explicit is not None:
        return explicit
    sde = os.environ.get("SOURCE_DATE_EPOCH")
    return int(sde) if sde and sde.isdigit() else int(time.time())


def plan_jobs(fleet: Fleet, version: str, converter: str = DEFAULT_CONVERTER) -> tuple[dict[str, ConversionJob], dict[tuple[str, str], str]]:
    """The distinct conversions, by key, and the key of each (group, model)."""
    jobs: dict[str, ConversionJob] = {}
    keys: dict[tuple[str, str], str] = {}
    hashes: dict[Path, str] = {}

    def h(p: Path) -> str:
        if p not in hashes:
            hashes[p] = sha256_path(p)
        return hashes[p]

    for gname, g in fleet.groups.items():
        profile = g.profile.model_dump(mode="json")
        for mname, m in g.models.items():
            src_sha = h(m.source)
            cal_sha = h(m.calibration) if m.calibration is not None else None
            parts = {"converter_version": version, "converter": converter, "source_sha256": src_sha,
                     "calibration_sha256": cal_sha, "profile": profile, "formats": m.convert["formats"],
                     "calibration_samples": m.convert["calibration_samples"], "options": m.convert["options"],
                     "prebuilt": m.spec.prebuilt}
            key = cache_key(parts)
            keys[(gname, mname)] = key
            if key not in jobs:
                jobs[key] = ConversionJob(
                    key=key, model_name=mname, source=str(m.source), source_sha256=src_sha,
                    calibration=str(m.calibration) if m.calibration else None, calibration_sha256=cal_sha,
                    profile=profile, formats=list(m.convert["formats"]),
                    calibration_samples=m.convert["calibration_samples"], options=dict(m.convert["options"]),
                    prebuilt=m.spec.prebuilt, converter=converter)
            jobs[key].groups.append(gname)
    return jobs, keys


def _progress(total: int, enabled: Optional[bool], desc: str = "converting",  # type: ignore[no-untyped-def]
              unit: str = "model"):
    if total == 0:
        return None
    from edge_runtime.progress import progress_bar

    return progress_bar(total, desc, show=enabled, unit=unit, leave=True)


def _mp_context() -> multiprocessing.context.BaseContext:
    """Workers fork from a server that has already imported the converter (fast start, no threads
    inherited from this process); 'spawn' where forkserver does not exist (Windows)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["converters.fleet.steps", "converters.pipeline"])
    return ctx


def run_conversions(pending: list[ConversionJob], cache: ConversionCache, jobs: int,
                    progress: Optional[bool]) -> None:
    """Run the jobs that missed the cache: in this process for ``jobs == 1``, else in worker processes."""
    bar = _progress(len(pending), progress)
    try:
        if jobs <= 1 or len(pending) <= 1:
            for job in pending:
                run_job(job, str(cache.root))
                if bar is not None:
                    bar.update(1)
            return
        ctx = _mp_context()
        with cf.ProcessPoolExecutor(max_workers=min(jobs, len(pending)), mp_context=ctx) as pool:
            futures = {pool.submit(run_job, job, str(cache.root)): job for job in pending}
            for fut in cf.as_completed(futures):
                job = futures[fut]
                try:
                    fut.result()
                except EdgeRuntimeError:
                    raise
                except Exception as exc:  # a converter bug: name the job, keep the cause
                    raise EdgeRuntimeError(f"converting model '{job.model_name}' for groups "
                                           f"{', '.join(job.groups)} failed: {type(exc).__name__}: {exc}") from exc
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()


def _serve_file(group: ResolvedGroup, model_files: dict[str, list[str]]) -> Optional[str]:
    if group.serve is None:
        return None
    files = model_files[group.serve]
    backend = str((group.daemon.get("model") or {}).get("backend", "auto"))
    want = ".onnx" if backend == "onnx" else ".tflite"
    for f in files:
        if f.endswith(want):
            return f
    return files[0]


def _dump_yaml(obj: Any) -> bytes:
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False).encode("utf-8")


def assemble_group(fleet: Fleet, group: ResolvedGroup, cache: ConversionCache, keys: dict[tuple[str, str], str],
                   jobs: dict[str, ConversionJob], version: str, build_time: int,
                   inline_devices: bool = True) -> tuple[dict[str, Content], dict[str, Any]]:
    """The files of a group's bundle and its manifest (without ``files``)."""
    files: dict[str, Content] = {}
    roles: dict[str, str] = {}
    models = []
    model_files: dict[str, list[str]] = {}
    over_budget: list[str] = []
    summaries: list[str] = []
    for mname, m in group.models.items():
        key = keys[(group.name, mname)]
        entry = cache.get(key)
        if entry is None:
            raise EdgeRuntimeError(f"conversion of '{mname}' for group '{group.name}' is missing from the cache")
        mine = []
        for fname, info in sorted(entry.files.items()):
            if fname.startswith("model."):
                dest = f"models/{mname}{Path(fname).suffix}"
                mine.append(dest)
            elif fname == "report.json":
                dest = f"reports/{mname}.json"
            else:
                dest = f"reports/{mname}.{fname}"
            files[dest] = entry.file(fname)
            roles[dest] = info["role"]
        model_files[mname] = mine
        report = entry.report
        fits = report.get("fits")
        arena = report.get("arena") or {}
        if fits is False or arena.get("fits_ram") is False or arena.get("fits_flash") is False:
            over_budget.append(mname)
            summary = (report.get("fit") or {}).get("summary")
            if summary:
                summaries.append(f"{mname}: {summary}")
        for f in mine:
            if Path(entry.file("model" + Path(f).suffix)).stat().st_size > group.profile.model_flash_budget_bytes:
                over_budget.append(mname)
        if m.labels is not None:
            files[f"labels/{mname}.txt"] = ("\n".join(m.labels) + "\n").encode("utf-8")
            roles[f"labels/{mname}.txt"] = "labels"
        if m.test_input is not None:
            files[f"inputs/{m.test_input.name}"] = m.test_input
            roles[f"inputs/{m.test_input.name}"] = "data"
        job = jobs[key]
        models.append({"name": mname, "files": mine, "source": m.source.name, "source_sha256": job.source_sha256,
                       "calibration_sha256": job.calibration_sha256, "cache_key": key})
    if over_budget:
        raise BudgetExceededError(
            f"group '{group.name}': model(s) {', '.join(sorted(set(over_budget)))} do not fit profile "
            f"'{group.profile.name}' (RAM budget {group.profile.inference_ram_budget_bytes:,} bytes, flash budget "
            f"{group.profile.model_flash_budget_bytes:,} bytes)" + ("; " + "; ".join(summaries) if summaries else ""))
    files["profile.yaml"] = _dump_yaml(group.profile.model_dump(mode="json"))
    roles["profile.yaml"] = "profile"
    device_cfg_path = None
    device_cfgs: dict[str, str] = {}
    separate: dict[str, dict[str, Any]] = {}
    if not group.profile.microcontroller and group.serve is not None:
        serve_file = _serve_file(group, model_files)
        device_cfg_path = "device.yaml"
        files["device.yaml"] = _dump_yaml(device_config(group, group.daemon, serve_file))
        roles["device.yaml"] = "config"
        for dev_id, daemon in sorted(group.devices.items()):
            if not inline_devices:
                separate[dev_id] = device_config(group, daemon, serve_file)
                continue
            p = f"devices/{dev_id}.yaml"
            files[p] = _dump_yaml(device_config(group, daemon, serve_file))
            roles[p] = "config"
            device_cfgs[dev_id] = p
    manifest = {
        "format": BUNDLE_FORMAT, "format_version": FORMAT_VERSION,
        "fleet": fleet.name, "group": group.name,
        "profile": group.profile.name, "profile_sha256": group.profile_sha256,
        "microcontroller": group.profile.microcontroller,
        "converter_version": version,
        "build_time": _dt.datetime.fromtimestamp(build_time, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "device_config": device_cfg_path, "device_configs": device_cfgs,
        "models": models,
    }
    manifest["_roles"] = roles
    manifest["_separate"] = separate
    return files, manifest


def _inline(mode: str, n_devices: int) -> bool:
    if mode not in DEVICE_FILES:
        raise EdgeRuntimeError(f"device_files must be one of {', '.join(DEVICE_FILES)}, got {mode!r}")
    if mode == "bundle" and n_devices > 5000:
        raise EdgeRuntimeError(f"{n_devices} devices are too many to carry in one bundle (devices refuse bundles of "
                               f"more than 10000 files); use --device-files separate")
    return mode == "bundle" or (mode == "auto" and n_devices <= INLINE_DEVICES_MAX)


def write_device_files(out_dir: Path, configs: dict[str, dict[str, Any]], *, fleet: str, group: str, release: int,
                       manifest_sha256: str, signer: Optional[Signer], progress: Optional[bool] = None) -> Path:
    """Write one signed ``<id>.json`` per device into ``out_dir`` (replaced as a whole)."""
    import shutil
    import tempfile

    from edge_runtime.agent.device_file import payload
    from edge_runtime.agent.signed import seal

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    bar = _progress(len(configs), progress, "device files", "file")
    try:
        for dev_id, cfg in configs.items():
            data = seal(payload(fleet, group, release, manifest_sha256, dev_id, cfg), signer)
            (tmp / f"{dev_id}.json").write_bytes(data)
            if bar is not None:
                bar.update(1)
        os.chmod(tmp, 0o755)
        old = out_dir.with_name(f".{out_dir.name}.old")
        if out_dir.exists():
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    return out_dir


def build_fleet(fleet_path: Union[str, os.PathLike], out_dir: Union[str, os.PathLike], *, jobs: int = 1,
                sign_key: Optional[Union[str, os.PathLike]] = None, cache_dir: Optional[Union[str, os.PathLike]] = None,
                progress: Optional[bool] = None, converter: str = DEFAULT_CONVERTER,
                build_time: Optional[int] = None, groups: Optional[list[str]] = None,
                release: Optional[int] = None, release_state: Optional[Union[str, os.PathLike]] = None,
                device_files: str = "auto") -> BuildResult:
    """Build every group's bundle into ``out_dir``; see the module docstring.

    Release numbers come from ``release_state`` (default ``out_dir/releases.json``) or ``release``,
    which must be above every built group's last release.
    """
    t0 = time.perf_counter()
    fleet = load_fleet(fleet_path)
    signer = Signer(sign_key) if sign_key is not None else None
    if groups:
        unknown = [g for g in groups if g not in fleet.groups]
        if unknown:
            raise EdgeRuntimeError(f"no group(s) {', '.join(unknown)} in {fleet_path} "
                                   f"(groups: {', '.join(fleet.groups)})")
        fleet.groups = {g: fleet.groups[g] for g in groups}
    out = Path(out_dir)
    with locked_state(release_state if release_state is not None else out / STATE_NAME) as state:
        numbers = {g: state.next_release(g, release) for g in fleet.groups}  # refuse before any conversion
        version = converter_version()
        cache = ConversionCache(cache_dir if cache_dir is not None else default_cache_dir())
        cache.clean_temporaries()
        all_jobs, keys = plan_jobs(fleet, version, converter)
        pending = [j for k, j in all_jobs.items() if cache.get(k) is None]
        run_conversions(pending, cache, jobs, progress)
        stamp = _build_time(build_time)
        results = []
        for gname, group in fleet.groups.items():
            files, manifest = assemble_group(fleet, group, cache, keys, all_jobs, version, stamp,
                                             _inline(device_files, len(group.devices)))
            roles = manifest.pop("_roles")
            separate = manifest.pop("_separate")
            manifest["release"] = numbers[gname]
            manifest["files"] = file_entries(files, roles)
            manifest_bytes = canonical_json(manifest)
            sig = signer.signature_file(manifest_bytes) if signer else None
            path = write_bundle(out / f"{gname}.tar.gz", files, manifest_bytes, sig, stamp)
            msha = hashlib.sha256(manifest_bytes).hexdigest()
            dev_dir = out / f"{gname}.devices"
            if separate:
                write_device_files(dev_dir, separate, fleet=fleet.name, group=gname, release=numbers[gname],
                                   manifest_sha256=msha, signer=signer, progress=progress)
            elif dev_dir.exists():
                import shutil

                shutil.rmtree(dev_dir)
            state.record(gname, numbers[gname], msha, manifest["build_time"])
            state.save()
            results.append(BundleResult(gname, path, sha256_file(path), path.stat().st_size, group.profile.name,
                                        signer.key_id if signer else None, len(files), numbers[gname],
                                        dev_dir if separate else None, len(group.devices)))
    index = {"fleet": fleet.name, "converter_version": version, "bundles": [
        {"group": r.group, "file": r.path.name, "sha256": r.sha256, "size": r.size, "profile": r.profile,
         "signed_by": r.signed_by, "release": r.release, "devices": r.devices,
         "device_files": r.device_files.name if r.device_files else None} for r in results]}
    (out / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    return BuildResult(results, len(pending), len(all_jobs) - len(pending), time.perf_counter() - t0, version,
                       list(all_jobs.values()))
