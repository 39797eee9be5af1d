#!/usr/bin/env bash
# Throughput of the release build on this machine with wrk (Debian package `wrk`):
# an authenticated GET of one DocumentReference, a search by patient, and a POST
# creating a DocumentReference. Usage: bench/wrk-basic.sh [seconds] [connections]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
seconds=${1:-10}
connections=${2:-16}
command -v wrk > /dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 2; }
work=$(mktemp -d)
server=""
trap '[ -n "$server" ] && kill $server 2>/dev/null; rm -rf "$work"' EXIT

cargo build --release --quiet --manifest-path "$root/Cargo.toml"
source "$root/scripts/dev-server.sh"
dev_issuer "$work/issuer"
token() { dev_token "$@"; }
start_server "$root/target/release/dmp-fhir-server" "$work/bench.sqlite" "$work/server.log"

system=$(token --actor system --sub insurer-feed)
doctor=$(token --actor professional --sub 810000000001 --profession 10)
patient=$(fhir_post "$base" "$system" Patient "$(patient_json)" | id_of)
document=$(document_json "$patient")
for _ in $(seq 1 50); do
    document_id=$(fhir_post "$base" "$doctor" DocumentReference "$document" | id_of)
done

echo "machine: $(nproc) cores, $(uname -m); wrk -t2 -c$connections -d${seconds}s; $(date -u +%Y-%m-%d)"
run() {
    local label=$1; shift
    echo "== $label"
    BENCH_TOKEN=$doctor BENCH_BODY=$document wrk -t2 -c"$connections" -d"${seconds}s" --latency "$@" | grep -E "Requests/sec|Latency |50%|99%|Non-2xx|Socket errors"
}
run "GET DocumentReference/{id} (authenticated professional)" -s "$here/get.lua" "$base/DocumentReference/$document_id"
run "GET DocumentReference?patient={id}&_count=20 (authenticated professional)" -s "$here/get.lua" "$base/DocumentReference?patient=$patient&_count=20"
run "POST DocumentReference (authenticated professional)" -s "$here/post.lua" "$base/DocumentReference"
run "GET /metadata (no authentication, no database: the machine's ceiling)" "$base/metadata"
