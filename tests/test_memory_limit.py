"""The memory-limited run: the daemon (``edge-runtime serve``) and ``edge-runtime run``
under the Raspberry Pi Zero 2 W profile's inference RAM budget, enforced by the kernel.

Enforcement: ``RLIMIT_AS`` set in the child before exec. It bounds the whole address
space (interpreter, numpy, LiteRT, threads' stacks), so it is stricter than resident
memory, and an allocation beyond it fails with ENOMEM, which a program can report. A
cgroup memory limit (v1 here, writable) was not used: exceeding it gets the process
SIGKILLed by the OOM killer, which no program can turn into a clear error. OpenBLAS
reserves buffers per CPU, so the child sees the board's core count
(``OPENBLAS_NUM_THREADS``), not the CI machine's.

References: outputs under the limit are compared bit for bit with the same backend run
in this process without a limit (LiteRT, or the micro backend).
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edge_runtime
from device_profiles import load_profile

ROOT = Path(__file__).resolve().parents[1]
PROFILE = load_profile("rpi-zero-2w")
BUDGET = PROFILE.inference_ram_budget_bytes
N = 100
TIMEOUT = 180


def run_limited(args: list[str], limit: int) -> subprocess.CompletedProcess:
    """``edge-runtime ARGS`` in a child whose address space is capped at ``limit`` bytes."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(PROFILE.cpu.cores)}
    env.pop("EDGE_RUNTIME_DEBUG", None)
    try:
        return subprocess.run([sys.executable, "-m", "edge_runtime.cli", *args], preexec_fn=cap, env=env,
                              cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"edge-runtime {args[0]} hung under a {limit / 2**20:.0f} MiB address-space limit "
                    f"(killed after {TIMEOUT} s); stderr: {(exc.stderr or b'')[-1500:]!r}")


@pytest.fixture(scope="module")
def kws(mlperf_models: Path, kws01, tmp_path_factory) -> dict:
    """The KWS model, the first N kws01 inputs as files, and the unlimited reference outputs."""
    x = kws01[0][:N]
    d = tmp_path_factory.mktemp("memlimit")
    np.save(d / "x_batch.npy", x)          # (N, 1, 49, 10, 1) for `run`
    np.save(d / "x_samples.npy", x[:, 0])  # (N, 49, 10, 1) samples for the daemon's file source
    model = mlperf_models / "kws_ref_model.tflite"
    ref = {}
    for backend in ("litert", "micro"):
        with edge_runtime.load(model, backend=backend, profile=PROFILE) as m:
            ref[backend] = np.stack([m.run(x[i])[0].reshape(-1) for i in range(N)])
    return {"model": str(model), "dir": d, "ref": ref}


def _assert_clean_success(r: subprocess.CompletedProcess, what: str) -> None:
    assert r.returncode == 0, f"{what} failed within the {BUDGET / 2**20:.0f} MiB budget:\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr


def test_budget_is_the_profiles(kws):
    assert PROFILE.name == "rpi-zero-2w" and 0 < BUDGET < PROFILE.ram_bytes
    assert resource.getrlimit(resource.RLIMIT_AS)[1] in (resource.RLIM_INFINITY,) or \
        resource.getrlimit(resource.RLIMIT_AS)[1] >= BUDGET, "this machine's own limit is below the budget"


def test_daemon_serves_kws_within_the_budget(kws):
    out = kws["dir"] / "serve.jsonl"
    r = run_limited(["serve", "--model", kws["model"], "--profile", PROFILE.name,
                     "--source", f"file:{kws['dir'] / 'x_samples.npy'}", "--sink", f"jsonl:{out}"], BUDGET)
    _assert_clean_success(r, "edge-runtime serve")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["seq"] for row in rows] == list(range(N))
    raw = np.array([row["raw"] for row in rows], dtype=np.int8)
    assert np.array_equal(raw, kws["ref"]["litert"])  # reference: LiteRT in-process, no limit


@pytest.mark.parametrize("backend", ["litert", "micro"])
def test_run_command_within_the_budget(kws, backend):
    out = kws["dir"] / f"run_{backend}.npy"
    r = run_limited(["run", kws["model"], "--backend", backend, "--profile", PROFILE.name,
                     "--input", str(kws["dir"] / "x_batch.npy"), "--output", str(out)], BUDGET)
    _assert_clean_success(r, f"edge-runtime run --backend {backend}")
    y = np.load(out).reshape(N, -1)
    assert np.array_equal(y, kws["ref"][backend])  # reference: the same backend in-process, no limit


TOO_SMALL = [0.5, 0.75, 0.85, 0.9]
#: ``run`` of a shipped profile no longer loads pydantic or PyYAML (about 24 MiB less address space), so it
#: now fits in 0.85 of the budget: its too-small fractions stop below that.
TOO_SMALL_RUN = [0.5, 0.6, 0.7, 0.75]


@pytest.mark.parametrize("command", ["run", "serve"])
def test_too_small_budget_fails_cleanly(kws, command):
    """Every fraction of the budget in TOO_SMALL: one error line about memory, no traceback, no signal."""
    problems = []
    for frac in TOO_SMALL_RUN if command == "run" else TOO_SMALL:
        limit = int(BUDGET * frac)
        if command == "run":
            args = ["run", kws["model"], "--profile", PROFILE.name, "--input", str(kws["dir"] / "x_batch.npy")]
        else:
            args = ["serve", "--model", kws["model"], "--profile", PROFILE.name,
                    "--source", f"file:{kws['dir'] / 'x_samples.npy'}",
                    "--sink", f"jsonl:{kws['dir'] / 'small.jsonl'}"]
        r = run_limited(args, limit)
        last = (r.stderr.strip().splitlines() or [""])[-1]
        if r.returncode <= 0 or "Traceback" in r.stderr or "memory" not in last.lower():
            problems.append(f"{limit / 2**20:.0f} MiB: exit {r.returncode}, last line {last[:200]!r}"
                            + (" (with a traceback)" if "Traceback" in r.stderr else ""))
    assert not problems, f"edge-runtime {command} under too small a budget:\n" + "\n".join(problems)
