#!/usr/bin/env bash
# This server side by side with a peer, the Helios FHIR Server (crates.io helios-hfs,
# features R4 and sqlite), on the same machine, in one run, on the same workloads:
# GET DocumentReference/{id}, POST DocumentReference, and the first page of a
# patient's documents with an exact total (`DocumentReference?patient=…&_count=20&_total=accurate`, 60 documents, so the
# page carries a next link), each at 1, 16 and 64 connections (wrk), our server with
# its access rules and audit trace on (the patient's médecin traitant's token), the
# peer as it ships (no authentication). The two servers take turns on each measurement.
# Our GET /healthz (no database, no token, no trace) gives the machine's ceiling. The
# deposits go to a second patient on each server, so that the search measured next
# still pages over the same 60 documents.
#
# Usage: bench/peer.sh [seconds per measurement, default 10]
# The peer is built once into PEER_CACHE (default ~/.cache/dmp-fhir-bench), with the
# search-parameter bundle it needs, made from the npm package hl7.fhir.r4.examples.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
seconds=${1:-10}
peer_version=0.2.7
examples_version=4.0.1
cache=${PEER_CACHE:-$HOME/.cache/dmp-fhir-bench}
command -v wrk > /dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 2; }
command -v npm > /dev/null || { echo "npm is needed (for hl7.fhir.r4.examples)" >&2; exit 2; }

peer_root=$cache/helios-hfs-$peer_version
if [ ! -x "$peer_root/bin/hfs" ]; then
    echo "building helios-hfs $peer_version (features R4, sqlite) into $peer_root, once" >&2
    cargo install helios-hfs --version "$peer_version" --no-default-features --features R4,sqlite \
        --locked --root "$peer_root" >&2
fi
peer_data=$cache/hfs-data-r4-$examples_version
if [ ! -s "$peer_data/search-parameters-r4.json" ]; then
    mkdir -p "$peer_data/package"
    (cd "$peer_data" && npm pack --silent "hl7.fhir.r4.examples@$examples_version" > package.name 2> /dev/null)
    tar -xzf "$peer_data/$(cat "$peer_data/package.name")" -C "$peer_data/package"
    # The FHIR R4 search parameters, as the Bundle the peer loads from its data folder.
    python3 - "$peer_data/package" "$peer_data/search-parameters-r4.json" << 'PY'
import json, pathlib, sys
package, out = pathlib.Path(sys.argv[1]), sys.argv[2]
entries = []
for path in sorted(package.rglob("SearchParameter-*.json")):
    resource = json.loads(path.read_text())
    if resource.get("resourceType") == "SearchParameter":
        entries.append({"fullUrl": resource.get("url"), "resource": resource})
json.dump({"resourceType": "Bundle", "id": "searchParams", "type": "collection", "entry": entries}, open(out, "w"))
print(f"{len(entries)} search parameters", file=sys.stderr)
PY
fi

work=$(mktemp -d)
server=""
peer=""
trap '[ -n "$server" ] && kill $server 2> /dev/null; [ -n "$peer" ] && kill $peer 2> /dev/null; rm -rf "$work"' EXIT

cargo build --release --quiet --manifest-path "$root/Cargo.toml"
source "$root/scripts/dev-server.sh"
dev_issuer "$work/issuer"
start_server "$root/target/release/dmp-fhir-server" "$work/ours.sqlite" "$work/ours.log"
ours=$base

peer_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(cd "$work" && exec "$peer_root/bin/hfs" --host 127.0.0.1 --port "$peer_port" --database-url "$work/peer.sqlite" \
    --data-dir "$peer_data" --log-level warn > "$work/peer.log" 2>&1) &
peer=$!
theirs="http://127.0.0.1:$peer_port"
for _ in $(seq 1 200); do
    curl -sf "$theirs/metadata" > /dev/null && break
    sleep 0.1
done
curl -sf "$theirs/metadata" > /dev/null || { echo "the peer did not start; see its log:" >&2; cat "$work/peer.log" >&2; exit 1; }

system=$(dev_token --actor system --sub insurer-feed)
doctor=$(dev_token --actor professional --sub 810000000001 --profession 10)
patient_body=$(patient_json)
second_body=$(patient_json 185067512345689)
our_patient=$(fhir_post "$ours" "$system" Patient "$patient_body" | id_of)
their_patient=$(fhir_post "$theirs" "" Patient "$patient_body" | id_of)
our_deposits=$(fhir_post "$ours" "$system" Patient "$second_body" | id_of)
their_deposits=$(fhir_post "$theirs" "" Patient "$second_body" | id_of)
for _ in $(seq 1 60); do
    our_id=$(fhir_post "$ours" "$doctor" DocumentReference "$(document_json "$our_patient")" | id_of)
    their_id=$(fhir_post "$theirs" "" DocumentReference "$(document_json "$their_patient")" | id_of)
done
our_document=$(document_json "$our_deposits")
their_document=$(document_json "$their_deposits")
# Both answer the search with the 60 documents and a next link, or the comparison is void.
for check in "$ours $doctor $our_patient" "$theirs - $their_patient"; do
    read -r url token patient <<< "$check"
    [ "$token" = - ] && token=""
    curl -sf ${token:+-H "Authorization: Bearer $token"} "$url/DocumentReference?patient=$patient&_count=20&_total=accurate" \
        | python3 -c 'import json, sys; b = json.load(sys.stdin); n = len(b.get("entry", [])); nxt = any(l["relation"] == "next" for l in b.get("link", [])); sys.exit(0 if n == 20 and nxt else f"page of {n}, next link {nxt}")'
done

results=$work/results.txt
measure() { # measure LABEL SERVER CONNECTIONS URL [METHOD TOKEN BODY]
    local label=$1 who=$2 connections=$3 url=$4 method=${5:-GET} token=${6:-} body=${7:-} threads=2
    [ "$connections" = 1 ] && threads=1
    line=$(BENCH_METHOD=$method BENCH_TOKEN=$token BENCH_BODY=$body \
        wrk -t"$threads" -c"$connections" -d"${seconds}s" -s "$here/call.lua" "$url" | grep '^requests/s')
    echo "$label|$who|$connections|$line" | tee -a "$results" >&2
}
for connections in 1 16 64; do
    measure "GET DocumentReference/{id}" ours "$connections" "$ours/DocumentReference/$our_id" GET "$doctor"
    measure "GET DocumentReference/{id}" peer "$connections" "$theirs/DocumentReference/$their_id"
    measure "search by patient, first page of 20, exact total" ours "$connections" "$ours/DocumentReference?patient=$our_patient&_count=20&_total=accurate" GET "$doctor"
    measure "search by patient, first page of 20, exact total" peer "$connections" "$theirs/DocumentReference?patient=$their_patient&_count=20&_total=accurate"
    measure "POST DocumentReference" ours "$connections" "$ours/DocumentReference" POST "$doctor" "$our_document"
    measure "POST DocumentReference" peer "$connections" "$theirs/DocumentReference" POST "" "$their_document"
    measure "GET /healthz (ceiling: no database, no token)" ours "$connections" "$ours/healthz"
done
rss() { awk '/VmHWM/ { printf "%.0f MB", $2 / 1024 }' "/proc/$1/status"; }
our_rss=$(rss "$server")
peer_rss=$(rss "$peer")

echo
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ { print $2 }') GiB, $(uname -m); wrk ${seconds}s per measurement; $(date -u +%Y-%m-%d)"
echo "ours: dmp-fhir-server $(git -C "$root" rev-parse --short HEAD), release, SQLite, access rules and audit on; peer: helios-hfs $peer_version (R4, sqlite), as shipped"
echo "peak RSS over the run: ours $our_rss, peer $peer_rss"
echo
python3 - "$results" << 'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    label, who, connections, numbers = line.rstrip("\n").split("|")
    words = numbers.split()
    values = dict(zip(words[0::2], words[1::2]))
    rows.setdefault((label, int(connections)), {})[who] = values
print("| workload | conns | ours req/s | peer req/s | ratio | ours p50 / p99 ms | peer p50 / p99 ms | errors or non-2xx (ours / peer) |")
print("|---|---|---|---|---|---|---|---|")
for (label, connections), sides in rows.items():
    ours, peer = sides.get("ours"), sides.get("peer")
    def cell(side):
        return f"{side['p50_ms']} / {side['p99_ms']}" if side else "-"
    def errors(side):
        return str(int(side["errors"]) + int(side["non2xx"])) if side else "-"
    ratio = f"{float(ours['requests/s']) / float(peer['requests/s']):.2f}" if ours and peer and float(peer["requests/s"]) else "-"
    print(f"| {label} | {connections} | {ours['requests/s'] if ours else '-'} | {peer['requests/s'] if peer else '-'} | {ratio} "
          f"| {cell(ours)} | {cell(peer)} | {errors(ours)} / {errors(peer)} |")
PY
