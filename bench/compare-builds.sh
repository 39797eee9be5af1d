#!/usr/bin/env bash
# Two builds of the server side by side on this machine, alternating runs so that
# both see the same conditions: the médecin traitant's audited GET of a document
# (wrk -t2 -c16, 8 s), their search page of 20 of the patient's 60 documents with its
# exact total (8 s) and /metadata (5 s), twice each.
# Usage: bench/compare-builds.sh BINARY_A BINARY_B
# (e.g. a release build of an earlier commit, made with
#  `git worktree add /tmp/a COMMIT && CARGO_TARGET_DIR=/tmp/a-target cargo build --release`)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
[ $# = 2 ] || { echo "usage: $0 BINARY_A BINARY_B" >&2; exit 2; }
source "$here/two-builds.sh"
measure() {
    local label=$1 binary=$2 patient id get metadata
    rm -rf "$work"/bench.sqlite*
    start_server "$binary" "$work/bench.sqlite" "$work/server.log"
    patient=$(bench_patient)
    id=$(curl -sf -X POST "$base/DocumentReference" -H "Authorization: Bearer $doctor" -H 'Content-Type: application/fhir+json' \
        -d "{\"resourceType\":\"DocumentReference\",\"status\":\"current\",\"type\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"11488-4\"}]},\"subject\":{\"reference\":\"Patient/$patient\"},\"date\":\"2024-01-02T10:00:00+01:00\",\"content\":[{\"attachment\":{\"contentType\":\"application/pdf\",\"data\":\"JVBERi0xLjQK\"}}]}" \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
    for n in $(seq 2 60); do
        curl -sf -o /dev/null -X POST "$base/DocumentReference" -H "Authorization: Bearer $doctor" -H 'Content-Type: application/fhir+json' \
            -d "{\"resourceType\":\"DocumentReference\",\"status\":\"current\",\"type\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"11488-4\"}]},\"subject\":{\"reference\":\"Patient/$patient\"},\"date\":\"2024-01-02T10:00:00+01:00\",\"description\":\"$n\",\"content\":[{\"attachment\":{\"contentType\":\"application/pdf\",\"data\":\"JVBERi0xLjQK\"}}]}"
    done
    get=$(BENCH_TOKEN=$doctor wrk -t2 -c16 -d8s -s "$here/get.lua" "$base/DocumentReference/$id" | awk '/Requests\/sec/ {print $2}')
    search=$(BENCH_TOKEN=$doctor wrk -t2 -c16 -d8s -s "$here/get.lua" "$base/DocumentReference?patient=$patient&_count=20&_total=accurate" | awk '/Requests\/sec/ {print $2}')
    metadata=$(wrk -t2 -c16 -d5s "$base/metadata" | awk '/Requests\/sec/ {print $2}')
    echo "$label: GET $get req/s, search page $search req/s, /metadata $metadata req/s"
    kill $server; wait $server 2>/dev/null || true; server=""
}
echo "machine: $(nproc) cores; $(date -u +%Y-%m-%d)"
for _ in 1 2; do
    measure A "$1"
    measure B "$2"
done
