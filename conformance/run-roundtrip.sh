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

source "$here/lib.sh"
start_dmp_server
TOKEN_SYSTEM=$system_token
# The space the examples' patient references are pointed at; dmp-doctor is its
# médecin traitant.
SPACE=$(new_space Aller-retour 285067512345639)
TOKEN_DOCTOR=$(dev_token --actor professional --sub 810000000001 --profession 10)
TOKEN_PATIENT=$(dev_token --actor patient --sub "user-$SPACE" --patient "$SPACE")
export TOKEN_SYSTEM TOKEN_DOCTOR TOKEN_PATIENT SPACE
python3 "$here/roundtrip.py" "$base" "$cache/package" "$here/roundtrip-expected.txt" "$reports/roundtrip.md"
