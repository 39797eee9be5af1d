#!/usr/bin/env bash
# Audited deposits (POST DocumentReference by the médecin traitant, each with its
# AuditEvent and the patient's notification in the same commit) with wrk, against the
# release build on SQLite with write group commit on (--write-group-commit true, the
# default: concurrent writes share one transaction and one fsync, each in its own
# savepoint) and off (one transaction per write). Every 201 follows its durable commit
# in both cases; the documents stored are counted against the 201s wrk saw.
# Usage: bench/write-group-commit.sh [seconds] [connections…]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
seconds=${1:-10}
shift || true
connections=("${@:-16}")
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
    local group=$1 connections=$2 patient document threads=2
    [ "$connections" = 1 ] && threads=1
    rm -f "$work"/bench.sqlite*
    start_server "$root/target/release/dmp-fhir-server" "$work/bench.sqlite" "$work/server.log" --write-group-commit "$group"
    patient=$(fhir_post "$base" "$system" Patient "$(patient_json)" | id_of)
    document=$(document_json "$patient")
    line=$(BENCH_METHOD=POST BENCH_TOKEN=$doctor BENCH_BODY=$document \
        wrk -t"$threads" -c"$connections" -d"${seconds}s" -s "$here/call.lua" "$base/DocumentReference" | grep '^requests/s')
    kill $server; wait $server 2> /dev/null || true; server=""
    stored=$(python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from resources where res_type = '"'"'DocumentReference'"'"'").fetchone()[0])' "$work/bench.sqlite")
    echo "| $group | $connections | $line | $stored stored |"
}

echo "machine: $(nproc) cores; wrk ${seconds}s; $(date -u +%Y-%m-%d)"
echo "| group commit | conns | wrk | documents |"
echo "|---|---|---|---|"
for c in "${connections[@]}"; do
    measure true "$c"
    measure false "$c"
done
