#!/usr/bin/env bash
# Where the CPU goes in the médecin traitant's audited GET DocumentReference/{id}
# (release build, SQLite, 16 connections): `perf record` samples the server while wrk
# loads it, then prints the share of each thread kind and the hottest functions.
# Needs wrk and perf (Debian packages wrk, linux-perf).
# DMP_SERVER_BINARY: a binary already built (default: this tree's release build);
# BENCH_DATABASE_URL: a PostgreSQL URL (default: a fresh SQLite file).
# Usage: bench/profile.sh [seconds, default 10] [connections, default 16] [path, default the GET]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
seconds=${1:-10}
connections=${2:-16}
command -v wrk > /dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 2; }
command -v perf > /dev/null || { echo "perf is needed: apt-get install linux-perf" >&2; exit 2; }
work=$(mktemp -d)
server=""
trap '[ -n "$server" ] && kill $server 2> /dev/null; rm -rf "$work"' EXIT

binary=${DMP_SERVER_BINARY:-$root/target/release/dmp-fhir-server}
[ -n "${DMP_SERVER_BINARY:-}" ] || cargo build --release --quiet --manifest-path "$root/Cargo.toml"
source "$root/scripts/dev-server.sh"
dev_issuer "$work/issuer"
start_server "$binary" "${BENCH_DATABASE_URL:-$work/bench.sqlite}" "$work/server.log"
system=$(dev_token --actor system --sub insurer-feed)
doctor=$(dev_token --actor professional --sub 810000000001 --profession 10)
patient=$(fhir_post "$base" "$system" Patient "$(patient_json)" | id_of)
for _ in $(seq 1 60); do
    document_id=$(fhir_post "$base" "$doctor" DocumentReference "$(document_json "$patient")" | id_of)
done
path=${3:-DocumentReference/$document_id}
path=${path//\{patient\}/$patient}

BENCH_TOKEN=$doctor wrk -t2 -c"$connections" -d"$((seconds + 2))s" --latency -s "$here/get.lua" "$base/$path" \
    > "$work/wrk.txt" &
load=$!
sleep 1
perf record -q -F 499 -g -p "$server" -o "$work/perf.data" -- sleep "$seconds" 2> /dev/null
wait $load
[ -n "${PERF_DATA:-}" ] && cp "$work/perf.data" "$PERF_DATA"
grep -E "Requests/sec|50%|99%|Non-2xx" "$work/wrk.txt"
echo "== CPU by thread"
perf report -i "$work/perf.data" --no-children --sort comm --stdio 2> /dev/null | grep -E "^ +[0-9]" | head -8
echo "== hottest functions (self time)"
perf report -i "$work/perf.data" --no-children --sort dso,sym --stdio -g none 2> /dev/null \
    | grep -E "^ +[0-9]" | head -${TOP:-40}
