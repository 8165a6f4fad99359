#!/usr/bin/env bash
# The local stand-ins of the Azure services, from npm, installed into .emulators/:
#   Cosmos DB:  @vercel/cosmosdb-server (plain HTTP, any key)
#   Storage:    azurite (Blob, Queue, Table)
#
#   scripts/emulators.sh install          install once (npm, into .emulators/node_modules)
#   scripts/emulators.sh start            install, start both in the background, wait until
#                                         they answer, print the settings that point at them
#   scripts/emulators.sh stop             stop what `start` started (by the pids it wrote)
#   scripts/emulators.sh status           which are running
#   scripts/emulators.sh env              print the settings (export lines)
#   scripts/emulators.sh run cosmos PORT  run the Cosmos stand-in in the foreground (PORT 0:
#                                         any free port); prints "Ready ... at HOST:PORT"
#   scripts/emulators.sh run azurite DIR  run Azurite's Blob service in the foreground, any free
#                                         port; prints "Azurite Blob service successfully
#                                         listens on http://HOST:PORT"
#
# Ports of `start`: HPC_EMU_COSMOS_PORT (default 8081), HPC_EMU_BLOB_PORT (default 10000).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/.emulators"
RUN="$DIR/run"
COSMOS_VERSION="1.0.1"
AZURITE_VERSION="3.35.0"
COSMOS_PORT="${HPC_EMU_COSMOS_PORT:-8081}"
BLOB_PORT="${HPC_EMU_BLOB_PORT:-10000}"
COSMOS_JS="$DIR/node_modules/@vercel/cosmosdb-server/lib/cli.js"
AZURITE_JS="$DIR/node_modules/azurite/dist/src/blob/main.js"
# The storage emulator's well-known account (public, the same in every Azurite).
AZURITE_ACCOUNT="devstoreaccount1"
AZURITE_KEY="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
# The Cosmos emulator's well-known key (the stand-in accepts any base64 key).
COSMOS_KEY="C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="

die() { echo "emulators: $*" >&2; exit 1; }

need_node() {
    command -v node >/dev/null 2>&1 || die "Node.js is missing: install Node.js 18+ (node and npm) to run the stand-ins"
    command -v npm >/dev/null 2>&1 || die "npm is missing: install npm (it comes with Node.js)"
}

install() {
    need_node
    if [[ -f "$COSMOS_JS" && -f "$AZURITE_JS" ]]; then
        return 0
    fi
    mkdir -p "$DIR"
    [[ -f "$DIR/package.json" ]] || echo '{"name": "hybridhpc-emulators", "private": true}' >"$DIR/package.json"
    echo "emulators: installing @vercel/cosmosdb-server@$COSMOS_VERSION and azurite@$AZURITE_VERSION into $DIR (once)" >&2
    (cd "$DIR" && npm install --no-audit --no-fund --loglevel=error \
        "@vercel/cosmosdb-server@$COSMOS_VERSION" "azurite@$AZURITE_VERSION" >&2)
    [[ -f "$COSMOS_JS" && -f "$AZURITE_JS" ]] || die "npm install finished but the servers are not in $DIR/node_modules"
}

run() {
    install
    case "${1:-}" in
        cosmos) exec node "$COSMOS_JS" --no-ssl --host 127.0.0.1 -p "${2:-0}" ;;
        azurite)
            local data="${2:-$DIR/azurite}"
            mkdir -p "$data"
            exec node "$AZURITE_JS" --blobHost 127.0.0.1 --blobPort "${3:-0}" --location "$data" \
                --skipApiVersionCheck --disableProductStyleUrl --loose --disableTelemetry ;;
        *) die "run what? cosmos or azurite" ;;
    esac
}

wait_port() {  # name port pidfile
    local i
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
        kill -0 "$(cat "$3")" 2>/dev/null || die "$1 exited at start; see $RUN/$1.log"
        sleep 0.1
    done
    die "$1 did not answer on port $2 within 10 s; see $RUN/$1.log"
}

alive() {  # pidfile: its process runs (a killed one not reaped yet is a zombie: not alive)
    local pid
    [[ -f "$1" ]] || return 1
    pid="$(cat "$1")"
    kill -0 "$pid" 2>/dev/null || return 1
    [[ "$(ps -o stat= -p "$pid" 2>/dev/null)" != Z* ]]
}

start_one() {  # name port command...
    local name="$1" port="$2"; shift 2
    local pidfile="$RUN/$name.pid"
    # running only if its process lives and answers on its port (a probe's kill -9'd
    # stand-in was "already running" by its stale pid file, and hpc up then failed)
    if alive "$pidfile" && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "emulators: $name already running (pid $(cat "$pidfile"))" >&2
        return 0
    fi
    rm -f "$pidfile"
    nohup "$@" >"$RUN/$name.log" 2>&1 &
    echo $! >"$pidfile"
    wait_port "$name" "$port" "$pidfile"
    echo "emulators: $name listening on 127.0.0.1:$port (pid $(cat "$pidfile"), log $RUN/$name.log)" >&2
}

settings() {
    cat <<EOF
export HPC_STORE=cosmos
export HPC_COSMOS_ENDPOINT=http://127.0.0.1:$COSMOS_PORT
export HPC_COSMOS_KEY=$COSMOS_KEY
export HPC_COSMOS_DATABASE=hybridhpc
export HPC_OUTPUT=blob
export HPC_BLOB_CONNECTION_STRING='DefaultEndpointsProtocol=http;AccountName=$AZURITE_ACCOUNT;AccountKey=$AZURITE_KEY;BlobEndpoint=http://127.0.0.1:$BLOB_PORT/$AZURITE_ACCOUNT;'
EOF
}

start() {
    install
    mkdir -p "$RUN"
    start_one cosmos "$COSMOS_PORT" node "$COSMOS_JS" --no-ssl --host 127.0.0.1 -p "$COSMOS_PORT"
    start_one azurite "$BLOB_PORT" node "$AZURITE_JS" --blobHost 127.0.0.1 --blobPort "$BLOB_PORT" \
        --location "$DIR/azurite" --skipApiVersionCheck --disableProductStyleUrl --loose --disableTelemetry
    echo "# settings that point at them (eval \"\$(scripts/emulators.sh env)\"):" >&2
    settings
}

stop() {
    local name pidfile
    for name in cosmos azurite; do
        pidfile="$RUN/$name.pid"
        [[ -f "$pidfile" ]] || continue
        if kill "$(cat "$pidfile")" 2>/dev/null; then echo "emulators: stopped $name" >&2; fi
        rm -f "$pidfile"
    done
}

status() {
    local name pidfile
    for name in cosmos azurite; do
        pidfile="$RUN/$name.pid"
        if alive "$pidfile"; then
            echo "$name: running (pid $(cat "$pidfile"))"
        else
            echo "$name: stopped"
        fi
    done
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    status) status ;;
    env) settings ;;
    run) shift; run "$@" ;;
    *) die "usage: $0 install|start|stop|status|env|run cosmos PORT|run azurite DIR" ;;
esac
