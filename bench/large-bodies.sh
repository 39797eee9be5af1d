#!/usr/bin/env bash
# Large bodies, two builds side by side, alternated: twenty POSTs of a 2.8 MB
# DocumentReference (2 MiB of inline data, compact JSON; DATA_MIB=8 for 10.7 MB) one
# after the other, then its GET by id (wrk -t2 -c4, 8 s), then a search page of all
# twenty (refused 413 past the answer's bound) and a read of it in a batch of 40;
# the server's peak RSS (VmHWM) after each phase. SQLite, a fresh store per run.
# Usage: [DATA_MIB=2] bench/large-bodies.sh BINARY_A BINARY_B [ROUNDS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
[ $# -ge 2 ] || { echo "usage: $0 BINARY_A BINARY_B [ROUNDS]" >&2; exit 2; }
source "$here/two-builds.sh"
hwm() { awk '/VmHWM/ {printf "%d", $2 / 1024}' "/proc/$server/status"; }
measure() {
    local label=$1 binary=$2 patient id posts get
    rm -rf "$work"/bench.sqlite*
    start_server "$binary" "$work/bench.sqlite" "$work/server.log"
    patient=$(bench_patient)
    python3 - "$patient" "${DATA_MIB:-2}" > "$work/doc.json" <<'PY'
import base64, json, sys
print(json.dumps(separators=(",", ":"), obj={"resourceType": "DocumentReference", "status": "current",
    "type": {"coding": [{"system": "http://loinc.org", "code": "11488-4"}]},
    "subject": {"reference": "Patient/" + sys.argv[1]}, "date": "2024-01-02T10:00:00+01:00",
    "content": [{"attachment": {"contentType": "application/pdf",
                                "data": base64.b64encode(b"%" * (int(sys.argv[2]) * 1024 * 1024)).decode()}}]}))
PY
    posts=$( { /usr/bin/time -f %e bash -c "for n in \$(seq 1 20); do curl -sf -o /dev/null -X POST '$base/DocumentReference' -H 'Authorization: Bearer $doctor' -H 'Content-Type: application/fhir+json' --data-binary @'$work/doc.json' || exit 1; done" ; } 2>&1 )
    local after_posts; after_posts=$(hwm)
    id=$(curl -sf "$base/DocumentReference?patient=$patient&_count=1&_elements=id" -H "Authorization: Bearer $doctor" \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["entry"][0]["resource"]["id"])')
    get=$(BENCH_TOKEN=$doctor wrk -t2 -c4 -d8s -s "$here/get.lua" "$base/DocumentReference/$id" | awk '/Requests\/sec/ {print $2}')
    local after_get; after_get=$(hwm)
    local search; search=$(curl -s -o /dev/null -w '%{http_code}' "$base/DocumentReference?patient=$patient&_count=500" -H "Authorization: Bearer $doctor")
    python3 -c "
import json
entry = {'request': {'method': 'GET', 'url': 'DocumentReference/$id'}}
print(json.dumps({'resourceType': 'Bundle', 'type': 'batch', 'entry': [entry] * 40}))" > "$work/batch.json"
    local batch; batch=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$base" -H "Authorization: Bearer $doctor" -H 'Content-Type: application/fhir+json' --data-binary @"$work/batch.json")
    echo "$label: 20 POSTs ${posts} s (peak ${after_posts} MB); GET ${get}/s (peak ${after_get} MB); search ${search}, batch ${batch} (peak $(hwm) MB)"
    kill $server; wait $server 2>/dev/null || true; server=""
}
echo "machine: $(nproc) cores; $(date -u +%Y-%m-%d)"
for _ in $(seq 1 "${3:-2}"); do
    measure A "$1"
    measure B "$2"
done
