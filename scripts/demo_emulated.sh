#!/usr/bin/env bash
# `make demo-emulated`: the demo job end to end on the Azure adapters' local stand-ins:
# the Cosmos DB store (HPC_STORE=cosmos, @vercel/cosmosdb-server) and Blob task output
# (HPC_OUTPUT=blob, Azurite), started by scripts/emulators.sh (`make emulators`). The bus
# stays the embedded one: nothing local stands in for Service Bus.
#
# The settings go through the environment, as in Azure's app settings: `hpc up` builds its
# store from them and hands them to the control plane and the agents it starts. Each run uses
# a fresh database and container (demo-<time>); emulators this script started are stopped
# at the end, ones that were already running are left running.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export HPC_HOME="$PWD/.hpc-demo-emulated"
PORT="${HPC_DEMO_PORT:-7072}"
export HPC_API_URL="http://127.0.0.1:$PORT"
rm -rf "$HPC_HOME"; mkdir -p "$HPC_HOME"

echo "== the stand-ins (scripts/emulators.sh start; Node.js, installed once into .emulators/)"
RUNNING_BEFORE=$(bash scripts/emulators.sh status | grep -c ': running' || true)
eval "$(bash scripts/emulators.sh start)"
RUN_ID="demo-$(date +%s)"
export HPC_COSMOS_DATABASE="$RUN_ID" HPC_BLOB_CONTAINER="$RUN_ID"
echo "HPC_STORE=$HPC_STORE HPC_COSMOS_ENDPOINT=$HPC_COSMOS_ENDPOINT HPC_COSMOS_DATABASE=$HPC_COSMOS_DATABASE"
echo "HPC_OUTPUT=$HPC_OUTPUT HPC_BLOB_CONTAINER=$HPC_BLOB_CONTAINER (Azurite)"

UP=""
cleanup() {
  if [[ -n "$UP" ]]; then kill -TERM "$UP" 2>/dev/null || true; wait "$UP" 2>/dev/null || true; fi
  if [[ "$RUNNING_BEFORE" == 0 ]]; then bash scripts/emulators.sh stop || true; fi
}
trap cleanup EXIT

echo
echo "== hpc up --nodes 2 --cores 2 (control plane on $HPC_API_URL; logs in $HPC_HOME/logs)"
hpc up --port "$PORT" --nodes 2 --cores 2 >"$HPC_HOME/up.log" 2>&1 &
UP=$!
for _ in $(seq 1 300); do
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
echo "== hpc task output $JOB 1  (served by the control plane from Blob storage)"
hpc task output "$JOB" 1
echo
hpc job view "$JOB"

echo
echo "== where it is stored: read back from the stand-ins directly, not through the API"
python - "$JOB" <<'EOF'
import sys

from azure.storage.blob import BlobServiceClient

from shared.settings import Settings
from shared.wiring import build_store

settings, job_id = Settings(), int(sys.argv[1])
store = build_store(settings)
job = store.get_job(job_id)
print(f"Cosmos DB {settings.cosmos_endpoint}, database {settings.cosmos_database}: "
      f"job {job.id} {job.state.value}, {job.task_count} tasks")
store.close()
service = BlobServiceClient.from_connection_string(settings.blob_connection_string)
container = service.get_container_client(settings.blob_container)
blobs = sorted(container.list_blobs(name_starts_with=f"{job_id}/"), key=lambda b: b.name)
print(f"Blob container {settings.blob_container}: {len(blobs)} blobs under {job_id}/ "
      "(stdout and stderr of each attempt), for example:")
for blob in [b for b in blobs if b.name.endswith(".stdout")][:3]:
    text = container.download_blob(blob.name).readall().decode().strip()
    print(f"  {blob.name} ({blob.blob_type}, {blob.size} bytes): {text}")
EOF

echo
echo "== shutting the cluster down"
cleanup
UP=""
trap - EXIT
exit "$STATUS"
