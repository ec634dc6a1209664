#!/usr/bin/env bash
# Set up everything the project needs on a fresh machine: system packages (when
# run as root), a virtual environment in .venv, and the package with all extras.
# Safe to run again: it does only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
APT_PACKAGES="mosquitto nginx qemu-user-static gcc gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"

missing=()
for pkg in $APT_PACKAGES; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing system packages: ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The mosquitto package may start a broker on port 1883; tests start their own on other ports.
  else
    echo "setup: warning: system packages missing (${missing[*]}); some tests will skip" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing edge-runtime with all extras into .venv (a few minutes the first time)"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e '.[litert,onnx,serial,mqtt,image,convert,verify,fast,dev]'
  # Distillation and the test model zoo need PyTorch; the CPU build 2.13.0 lies on this machine kind's disk.
  # onnxscript lets torch.onnx.export run its default (dynamo) exporter, so users need no dynamo=False.
  if ! .venv/bin/python -m pip install -q 'torch==2.13.0' onnxscript; then
    echo "setup: warning: torch 2.13.0 not installable here; 'edge-convert distill' and its tests will skip" >&2
  fi
  touch "$stamp"
fi
echo "setup: ready (.venv)"
