#!/usr/bin/env bash
# What the PDSm checks cost (R-MHD-1 … 3): the published ITI-65 Bundle (a
# SubmissionSet, one DocumentReference with conditional references by INS, its CDA
# Binary; profile, uniqueId, size and SHA-1 checked) beside a plain single-document
# POST, each a durable write with its trace, release build, SQLite, wrk.
# Usage: bench/iti65.sh [seconds] [connections]
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
start_server "$root/target/release/dmp-fhir-server" "$work/bench.sqlite" "$work/server.log"

system=$(dev_token --actor system --sub insurer-feed)
doctor=$(dev_token --actor professional --sub 810000000001 --profession 10)
nir=2850675123456$(python3 -c 'print(f"{97 - 2850675123456 % 97:02d}")')
patient=$(fhir_post "$base" "$system" Patient "$(patient_json "$nir")" | id_of)
single=$(document_json "$patient")
# bundle_json pdsm|plain: the published Bundle (its uniqueId made unique per request),
# or the same three resources as plain FHIR (no profile claims, no uniqueId, size or
# hash, a literal Patient reference, the Binary's securityContext given): the
# difference is what the PDSm checks cost.
bundle_json() {
    python3 - "$root/conformance/pdsm/examples/Bundle-example-td2-iti65-lot-soumission.json" "$nir" "$patient" "$1" <<'PY'
import json, sys
path, nir, patient, kind = sys.argv[1:5]
bundle = json.loads(open(path).read().replace("123456789012345", nir))
document = bundle["entry"][1]["resource"]
if kind == "pdsm":
    document["masterIdentifier"]["value"] = "urn:oid:1.2.250.1.213.1.4.8.99999.__UNIQUE__"
else:
    text = json.dumps(bundle).replace(f"Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|{nir}", f"Patient/{patient}")
    bundle = json.loads(text)
    for entry in bundle["entry"]:
        entry["resource"].pop("meta", None)
    document = bundle["entry"][1]["resource"]
    document.pop("masterIdentifier")
    for key in ("size", "hash"):
        document["content"][0]["attachment"].pop(key)
    bundle["entry"][2]["resource"]["securityContext"] = {"reference": f"Patient/{patient}"}
print(json.dumps(bundle))
PY
}
echo "machine: $(nproc) cores, $(uname -m); wrk -t2 -c$connections -d${seconds}s; $(date -u +%Y-%m-%d)"
run() {
    local label=$1 body=$2; shift 2
    echo "== $label"
    BENCH_TOKEN=$doctor BENCH_BODY=$body wrk -t2 -c"$connections" -d"${seconds}s" --latency "$@" | grep -E "Requests/sec|Latency |50%|99%|Non-2xx|Socket errors"
}
run "POST DocumentReference (one document, inline bytes)" "$single" -s "$here/post.lua" "$base/DocumentReference"
run "POST / the same three resources as a plain transaction" "$(bundle_json plain)" -s "$here/unique.lua" "$base/"
run "POST / ITI-65 (SubmissionSet + DocumentReference + Binary, PDSm checks)" "$(bundle_json pdsm)" -s "$here/unique.lua" "$base/"
