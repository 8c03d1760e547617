#!/usr/bin/env bash
# The Jepsen-like harness (python -m jepsen_like) for CI: one bounded run of real beaver-vault
# processes under SIGKILL/restart and SIGSTOP/SIGCONT faults (plus network partitions and clock
# bumps where this machine allows them), seeded from the commit so every commit explores a new
# schedule. A failure prints its REPRODUCE line; the exit status is the harness's:
#   0 linearizable, 1 NOT linearizable, 2 unknown (checker budget), 3 harness crash,
#   4 liveness (no leader after healing / a server died on its own / keys unreadable).
#
#   JEPSEN_SECONDS (default 20)   workload time of the bounded run (whole run ~35 s)
#   JEPSEN_FAULTS                 default: kill,pause + partition if root with ip and nft
#                                 + skew if libfaketime is installed
#   JEPSEN_INSTALL=1              as root, apt-get install iproute2 nftables faketime if missing
#   JEPSEN_OUT (default: a temp dir) where histories, logs and nemesis logs go
#
# Opt-in longer run: JEPSEN_LONG=1 runs, after the bounded run, every combination of
# 3 and 5 nodes x JEPSEN_LONG_SEEDS seeds (default 3) for JEPSEN_LONG_SECONDS (default 120)
# each with every available fault kind, e.g.:
#   JEPSEN_LONG=1 JEPSEN_LONG_SEEDS=5 bash scripts/jepsen-ci.sh
set -uo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python

if [[ "${JEPSEN_INSTALL:-0}" == 1 && $(id -u) == 0 ]]; then
    missing=()
    command -v ip >/dev/null || missing+=(iproute2)
    command -v nft >/dev/null || missing+=(nftables)
    command -v faketime >/dev/null || missing+=(faketime)
    if ((${#missing[@]})); then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
fi

faults=${JEPSEN_FAULTS:-kill,pause}
if [[ -z "${JEPSEN_FAULTS:-}" ]]; then
    if [[ $(id -u) == 0 ]] && command -v ip >/dev/null && command -v nft >/dev/null; then faults+=",partition"; fi
    if ls /usr/lib/*/faketime/libfaketimeMT.so.1 /usr/lib/faketime/libfaketimeMT.so.1 >/dev/null 2>&1; then
        faults+=",skew"
    fi
fi
commit=$(git rev-parse --short=7 HEAD 2>/dev/null || echo 0)
seed=$(( (16#${commit}) % 1000000000 ))
out=${JEPSEN_OUT:-$(mktemp -d -t jepsen-ci-XXXXXX)}
mkdir -p "$out"
echo "jepsen-ci: commit $commit seed $seed faults $faults output $out" >&2

timeout 180 "$py" -m jepsen_like --nodes 3 --time-limit "${JEPSEN_SECONDS:-20}" --seed "$seed" \
    --faults "$faults" --workdir "$out/bounded" --history "$out/bounded/history.jsonl"
rc=$?
if ((rc != 0)) || [[ "${JEPSEN_LONG:-0}" != 1 ]]; then
    exit "$rc"
fi

for nodes in 3 5; do
    for i in $(seq 1 "${JEPSEN_LONG_SEEDS:-3}"); do
        s=$((seed + nodes * 1000 + i))
        timeout $(( ${JEPSEN_LONG_SECONDS:-120} + 300 )) "$py" -m jepsen_like --nodes "$nodes" \
            --time-limit "${JEPSEN_LONG_SECONDS:-120}" --seed "$s" --faults "$faults" \
            --workdir "$out/long-$nodes-$s" --history "$out/long-$nodes-$s/history.jsonl"
        r=$?
        if ((r != 0)); then
            echo "jepsen-ci: long run nodes=$nodes seed=$s exited $r (kept in $out/long-$nodes-$s)" >&2
            rc=$r
        fi
    done
done
exit "$rc"
