#!/usr/bin/env bash
# The cost of the access rules: an authorised professional's (the médecin traitant's)
# GET of a document and search of a patient's documents, with wrk, against the
# release build (rules on) and the same build with the benchmark-only feature
# bench-rules-off (the gate lets everything through; built in its own target folder).
# Usage: bench/rules-on-off.sh [seconds] [connections]
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
cargo build --release --quiet --manifest-path "$root/Cargo.toml" --features bench-rules-off --target-dir "$root/target/bench-rules-off"
source "$root/scripts/dev-server.sh"
dev_issuer "$work/issuer"
token() { dev_token "$@"; }
system=$(token --actor system --sub insurer-feed)
doctor=$(token --actor professional --sub 810000000001 --profession 10)

measure() {
    local label=$1 binary=$2
    local patient document_id
    rm -f "$work"/bench.sqlite*
    start_server "$binary" "$work/bench.sqlite" "$work/server.log"
    patient=$(curl -sf -X POST "$base/Patient" -H "Authorization: Bearer $system" -H 'Content-Type: application/fhir+json' \
        -d '{"resourceType":"Patient","identifier":[{"system":"urn:oid:1.2.250.1.213.1.4.8","value":"285067512345639"}],"name":[{"family":"Bench"}],"generalPractitioner":[{"identifier":{"system":"urn:oid:1.2.250.1.71.4.2.1","value":"810000000001"}}]}' \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
    for n in $(seq 1 50); do
        code=$([ $((n % 5)) = 0 ] && echo 68599-0 || echo 11488-4)
        curl -sf -X POST "$base/DocumentReference" -H "Authorization: Bearer $doctor" -H 'Content-Type: application/fhir+json' \
            -d "{\"resourceType\":\"DocumentReference\",\"status\":\"current\",\"type\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"$code\"}]},\"subject\":{\"reference\":\"Patient/$patient\"},\"date\":\"2024-01-02T10:00:00+01:00\",\"content\":[{\"attachment\":{\"contentType\":\"application/pdf\",\"data\":\"JVBERi0xLjQK\"}}]}" > "$work/last.json"
    done
    document_id=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["id"])' "$work/last.json")
    for target in "DocumentReference/$document_id" "DocumentReference?patient=$patient&_count=20&_total=accurate"; do
        echo "== $label: GET $target"
        BENCH_TOKEN=$doctor wrk -t2 -c"$connections" -d"${seconds}s" --latency -s "$here/get.lua" "$base/$target" | grep -E "Requests/sec|50%|99%|Non-2xx"
    done
    kill $server; wait $server 2>/dev/null || true; server=""
}

echo "machine: $(nproc) cores; wrk -t2 -c$connections -d${seconds}s; $(date -u +%Y-%m-%d)"
measure "rules on" "$root/target/release/dmp-fhir-server"
measure "rules off" "$root/target/bench-rules-off/release/dmp-fhir-server"
