#!/usr/bin/env bash
# `make demo`: a local cluster (control plane + 2 agents), a sweep through it, its result, shut down.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export HPC_HOME="$PWD/.hpc-demo"
PORT="${HPC_DEMO_PORT:-7071}"
export HPC_API_URL="http://127.0.0.1:$PORT"
rm -rf "$HPC_HOME"; mkdir -p "$HPC_HOME"

echo "== hpc up --nodes 2 --cores 2 (control plane on $HPC_API_URL; logs in $HPC_HOME/logs)"
hpc up --port "$PORT" --nodes 2 --cores 2 >"$HPC_HOME/up.log" 2>&1 &
UP=$!
cleanup() { kill -TERM "$UP" 2>/dev/null || true; wait "$UP" 2>/dev/null || true; }
trap cleanup EXIT

for _ in $(seq 1 150); do
  if hpc node list --json 2>/dev/null | python3 -c 'import json,sys; n=json.load(sys.stdin)["nodes"]; sys.exit(0 if sum(x["state"]=="Online" for x in n)>=2 else 1)' 2>/dev/null; then
    break
  fi
  kill -0 "$UP" 2>/dev/null || { echo "hpc up exited:"; cat "$HPC_HOME/up.log"; exit 1; }
  sleep 0.2
done
hpc node list

echo
echo "== hpc job submit --name demo-sweep --sweep 1-12 -- 'echo ...; sleep 1'  (* is the sweep index, ** a literal *)"
JOB=$(hpc job submit --name demo-sweep --sweep 1-12 -- \
  'echo "sweep index * squared is $((* ** *)), computed on $HPC_NODE_NAME"; sleep 1')

echo
echo "== hpc job watch $JOB"
STATUS=0
hpc job watch "$JOB" || STATUS=$?

echo
echo "== hpc task list $JOB"
hpc task list "$JOB"
echo
echo "== hpc task output $JOB 1"
hpc task output "$JOB" 1
echo
hpc job view "$JOB"
echo
echo "== shutting the cluster down"
cleanup
trap - EXIT
exit "$STATUS"
