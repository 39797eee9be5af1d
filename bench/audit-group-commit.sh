#!/usr/bin/env bash
# The cost of the durable trace (R-AUD-2): an authorised professional's audited GET of
# a document and search of a patient's documents, with wrk, against the release build
# with the trace's group commit on (--audit-group-commit true, the default) and off
# (one transaction per request). Every answered request has its AuditEvent committed
# before the answer in both cases.
# Usage: bench/audit-group-commit.sh [seconds] [connections…]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
seconds=${1:-10}
shift || true
connections=("${@:-16}")
[ ${#connections[@]} -gt 0 ] || connections=(16)
command -v wrk > /dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 2; }
work=$(mktemp -d)
server=""
trap '[ -n "$server" ] && kill $server 2>/dev/null; rm -rf "$work"' EXIT

cargo build --release --quiet --manifest-path "$root/Cargo.toml"
source "$root/scripts/dev-server.sh"
dev_issuer "$work/issuer"
system=$(dev_token --actor system --sub insurer-feed)
doctor=$(dev_token --actor professional --sub 810000000001 --profession 10)

measure() {
    local group=$1 patient document_id
    rm -f "$work"/bench.sqlite*
    start_server "$root/target/release/dmp-fhir-server" "$work/bench.sqlite" "$work/server.log" --audit-group-commit "$group"
    patient=$(fhir_post "$base" "$system" Patient "$(patient_json)" | id_of)
    for _ in $(seq 1 50); do
        document_id=$(fhir_post "$base" "$doctor" DocumentReference "$(document_json "$patient")" | id_of)
    done
    for c in "${connections[@]}"; do
        for target in "DocumentReference/$document_id" "DocumentReference?patient=$patient&_count=20"; do
            echo "== group commit $group, -c$c: GET $target"
            BENCH_TOKEN=$doctor wrk -t2 -c"$c" -d"${seconds}s" --latency -s "$here/get.lua" "$base/$target" | grep -E "Requests/sec|50%|99%|Non-2xx"
        done
    done
    local events
    events=$(python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from audit_chain").fetchone()[0])' "$work/bench.sqlite")
    echo "   AuditEvents stored: $events"
    kill $server; wait $server 2>/dev/null || true; server=""
}

echo "machine: $(nproc) cores; wrk -t2 -d${seconds}s; $(date -u +%Y-%m-%d)"
measure true
measure false
