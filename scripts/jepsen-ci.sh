#!/usr/bin/env bash
# The Jepsen-like harness (python -m jepsen_like) for CI: one bounded run of real beaver-vault
# processes under combined faults (up to 2 kinds at once): SIGKILL/restart, SIGSTOP/SIGCONT,
# membership churn, whole-cluster restarts, lost un-fsynced writes (a FUSE layer), kills during
# snapshot installs (low snapshot threshold), network partitions (namespaces + nftables: isolate, halves, bridge, one-way) and
# clock faults (libfaketime: small skews, large jumps, strobe). Seeded from the commit so every
# commit explores a new schedule. A failure prints its REPRODUCE line; the exit status is the
# harness's:
#   0 linearizable, 1 NOT linearizable, 2 unknown (checker budget), 3 harness crash,
#   4 liveness, 5 a requested fault cannot run here, 6 members diverged, 7 late unknown write.
#
#   JEPSEN_SECONDS (default 20)   workload time of the bounded run (whole run ~40-60 s)
#   JEPSEN_FAULTS                 default: every kind; partition and clock kinds need root, `ip`,
#                                 `nft` and libfaketime, which scripts/setup-env.sh installs as root
#   JEPSEN_OUT (default: a temp dir) where histories, logs, nemesis logs and the timeline go
#
# The full matrix (3 and 5 nodes x fault mixes, 30-60 s each, results table): scripts/jepsen-matrix.sh
set -uo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python

faults=${JEPSEN_FAULTS:-kill,pause,partition,skew,clock,membership,restart-all,snapshot,disk}
if [[ -z "${JEPSEN_FAULTS:-}" && $(id -u) != 0 ]]; then
    # Not root: no namespaces and no FUSE mounts. Say so and ask only for what can run; a
    # requested fault that cannot run is an error in the harness itself.
    faults=kill,pause,skew,clock,membership,restart-all,snapshot
    echo "jepsen-ci: not root: without partition and disk faults" >&2
fi
commit=$(git rev-parse --short=7 HEAD 2>/dev/null || echo 0)
seed=$(( (16#${commit}) % 1000000000 ))
out=${JEPSEN_OUT:-$(mktemp -d -t jepsen-ci-XXXXXX)}
mkdir -p "$out"
echo "jepsen-ci: commit $commit seed $seed faults $faults output $out" >&2

timeout 115 "$py" -m jepsen_like --nodes 3 --time-limit "${JEPSEN_SECONDS:-20}" --seed "$seed" \
    --faults "$faults" --concurrent 2 --workdir "$out/bounded" --history "$out/bounded/history.jsonl" \
    --summary "$out/bounded/summary.json"
