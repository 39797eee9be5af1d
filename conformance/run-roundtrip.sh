#!/usr/bin/env bash
# Round trip of the official FHIR R4 examples (npm package hl7.fhir.r4.examples 4.0.1)
# of every type this server serves: each is created by the actor who may create it,
# read back and compared (conformance/roundtrip.py). The report goes to
# conformance/reports/roundtrip.md (or CONFORMANCE_REPORTS); the run fails if a
# refusal or a difference is not explained in roundtrip-expected.txt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
reports=${CONFORMANCE_REPORTS:-$here/reports}
work="$here/work/roundtrip"
examples_version=4.0.1
cache="$here/.cache/hl7.fhir.r4.examples-$examples_version"

rm -rf "$work" && mkdir -p "$work" "$reports"
if [ ! -d "$cache/package" ]; then
    mkdir -p "$cache"
    (cd "$cache" && npm pack --silent "hl7.fhir.r4.examples@$examples_version" > package.name 2> /dev/null \
        && tar -xzf "$(cat package.name)" && rm -f "$(cat package.name)")
fi

if [ -z "${DMP_SERVER_BINARY:-}" ]; then
    cargo build --release --quiet --manifest-path "$root/Cargo.toml"
    DMP_SERVER_BINARY=$root/target/release/dmp-fhir-server
fi
source "$root/scripts/dev-server.sh"
dev_issuer "$work/issuer"
server=""
trap '[ -n "$server" ] && kill $server 2> /dev/null || true' EXIT
start_server "$DMP_SERVER_BINARY" "$work/dmp.sqlite" "$work/server.log"

TOKEN_SYSTEM=$(dev_token --actor system --sub insurer-feed --scope 'system/Patient.cruds system/DocumentReference.c system/Binary.c')
# The space the examples' patient references are pointed at; dmp-doctor is its
# médecin traitant.
SPACE=$(curl -sf -X POST "$base/Patient" -H "Authorization: Bearer $TOKEN_SYSTEM" -H 'Content-Type: application/fhir+json' \
    -d '{"resourceType":"Patient","identifier":[{"system":"urn:oid:1.2.250.1.213.1.4.8","value":"285067512345639"}],"name":[{"family":"Exemple","given":["Aller-retour"]}],"birthDate":"1985-06-15","generalPractitioner":[{"identifier":{"system":"urn:oid:1.2.250.1.71.4.2.1","value":"810000000001"}}]}' \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
TOKEN_DOCTOR=$(dev_token --actor professional --sub 810000000001 --profession 10)
TOKEN_PATIENT=$(dev_token --actor patient --sub "user-$SPACE" --patient "$SPACE")
export TOKEN_SYSTEM TOKEN_DOCTOR TOKEN_PATIENT SPACE
python3 "$here/roundtrip.py" "$base" "$cache/package" "$here/roundtrip-expected.txt" "$reports/roundtrip.md"
