#!/usr/bin/env bash
# Start a local Beaver-Vault cluster of real processes (3 nodes by default); Ctrl-C stops it.
# Arguments go to `beaver-vault cluster`, e.g.: bash scripts/cluster.sh --nodes 5
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
exec .venv/bin/beaver-vault cluster "$@"
