#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment: .venv with the project installed
# editable plus its test extra, pinned by scripts/constraints.txt. Idempotent and quick when
# nothing changed (a stamp of pyproject.toml + constraints.txt skips pip). Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
STAMP="$VENV/.beaver-vault-setup"

say() { printf 'setup-env: %s\n' "$*" >&2; }

# --- Debian packages needed by tests --------------------------------------------------------
# >>> Add Debian packages a test needs here (e.g. chromium for browser tests, nftables for
# >>> jepsen_like partitions). They are installed only when missing; apt-get update runs once.
# nftables, faketime, iproute2, libfuse2: the Jepsen-like harness's partitions (network
# namespaces + nft), clock faults (libfaketime) and lost un-fsynced writes (its FUSE layer,
# jepsen_like/lazyfs.py); a requested fault that cannot run is an error there.
APT_PACKAGES=(nftables faketime iproute2 libfuse2)
# <<<

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        say "missing Debian packages: ${missing[*]}; run as root, or: sudo apt-get install -y ${missing[*]}"
        exit 1
    fi
    say "installing Debian packages: ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

# --- Python ---------------------------------------------------------------------------------
pick_python() {
    local candidate
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

if [[ ! -x "$VENV/bin/python" ]]; then
    if ! PYTHON=$(pick_python); then
        say "need Python >= 3.11 (python3.11 or python3 on PATH)"
        exit 1
    fi
    say "creating $VENV with $PYTHON"
    if ! "$PYTHON" -m venv "$VENV"; then
        say "python -m venv failed; on Debian: apt-get install -y python3-venv"
        exit 1
    fi
fi

want=$(cat pyproject.toml scripts/constraints.txt | sha256sum | cut -d' ' -f1)
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]] && "$VENV/bin/python" -c 'import beaver_vault' 2>/dev/null; then
    exit 0  # up to date
fi

say "installing the project (editable, test extra) pinned by scripts/constraints.txt"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    -c scripts/constraints.txt -e '.[test]'
echo "$want" >"$STAMP"
say "ready: $VENV"
