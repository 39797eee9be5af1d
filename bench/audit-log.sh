#!/usr/bin/env bash
# The trace's log (SQLite, R-AUD-2): an authorised professional's audited GET of a
# document and search of a patient's documents, with wrk, against the release build
# with the trace of reads made durable in the instance's log and applied afterwards
# (--audit-log true, the default) and committed to the database before each answer
# (--audit-log false). The two take turns, ROUNDS times (default 3). Each run checks
# that every answered request has its AuditEvent stored, once the server stopped.
# Last, on each build, reads and deposits at once: GET by id at 16 connections while
# POST DocumentReference runs at 16 more (two wrk processes).
# Usage: bench/audit-log.sh [seconds] [connections…]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
seconds=${1:-8}
shift || true
connections=("${@:-16}")
[ ${#connections[@]} -gt 0 ] || connections=(16)
rounds=${ROUNDS:-3}
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
    local use_log=$1 patient document_id answered=0 line
    rm -rf "$work"/bench.sqlite*
    start_server "$root/target/release/dmp-fhir-server" "$work/bench.sqlite" "$work/server.log" --audit-log "$use_log"
    patient=$(fhir_post "$base" "$system" Patient "$(patient_json)" | id_of)
    for _ in $(seq 1 50); do
        document_id=$(fhir_post "$base" "$doctor" DocumentReference "$(document_json "$patient")" | id_of)
    done
    local before
    before=$(python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from audit_chain").fetchone()[0])' "$work/bench.sqlite")
    for c in "${connections[@]}"; do
        for target in "DocumentReference/$document_id" "DocumentReference?patient=$patient&_count=20"; do
            echo "== audit log $use_log, -c$c: GET $target"
            BENCH_TOKEN=$doctor wrk -t2 -c"$c" -d"${seconds}s" --latency -s "$here/get.lua" "$base/$target" > "$work/wrk.out"
            grep -E "Requests/sec|^ +50%|^ +99%|Non-2xx" "$work/wrk.out"
            line=$(grep -E "requests in" "$work/wrk.out")
            answered=$((answered + $(echo "$line" | awk '{print $1}')))
        done
    done
    echo "== audit log $use_log, -c16 GET by id and -c16 POST DocumentReference at once"
    BENCH_TOKEN=$doctor BENCH_BODY="$(document_json "$patient")" wrk -t1 -c16 -d"${seconds}s" --latency \
        -s "$here/post.lua" "$base/DocumentReference" > "$work/post.out" &
    local posting=$!
    BENCH_TOKEN=$doctor wrk -t1 -c16 -d"${seconds}s" --latency -s "$here/get.lua" \
        "$base/DocumentReference/$document_id" > "$work/wrk.out"
    wait $posting
    echo "   GET:  $(grep -E "Requests/sec|^ +50%|^ +99%|Non-2xx" "$work/wrk.out" | tr -s ' ' | tr '\n' ' ')"
    echo "   POST: $(grep -E "Requests/sec|^ +50%|^ +99%|Non-2xx" "$work/post.out" | tr -s ' ' | tr '\n' ' ')"
    answered=$((answered + $(grep -E "requests in" "$work/wrk.out" | awk '{print $1}')))
    answered=$((answered + $(grep -E "requests in" "$work/post.out" | awk '{print $1}')))
    kill $server; wait $server 2>/dev/null || true; server=""
    local events
    events=$(python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from audit_chain").fetchone()[0])' "$work/bench.sqlite")
    echo "   requests answered: $answered (wrk counts), AuditEvents stored after the stop: $((events - before))"
}

echo "machine: $(nproc) cores; wrk -t2 -d${seconds}s; $(date -u +%Y-%m-%d)"
for _ in $(seq 1 "$rounds"); do
    measure true
    measure false
done
