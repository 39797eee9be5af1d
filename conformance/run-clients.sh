#!/usr/bin/env bash
# Two real FHIR client libraries run a professional's workflow against the server:
# fhirpy (PyPI) and fhir-kit-client (npm), each on a space of its own whose médecin
# traitant holds the token (conformance/clients/). Fails if a step does not behave.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
work="$here/work/clients"
venv="$here/.venv-clients"
node_dir="$here/.node-clients"
fhirpy_version=2.3.1
fhir_kit_version=2.0.3

rm -rf "$work" && mkdir -p "$work"
if ! "$venv/bin/pip" show fhirpy 2> /dev/null | grep -q "^Version: $fhirpy_version$"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "fhirpy==$fhirpy_version"
fi
if [ ! -f "$node_dir/node_modules/fhir-kit-client/package.json" ] \
    || ! grep -q "\"version\": \"$fhir_kit_version\"" "$node_dir/node_modules/fhir-kit-client/package.json"; then
    mkdir -p "$node_dir"
    npm install --silent --no-audit --no-fund --prefix "$node_dir" "fhir-kit-client@$fhir_kit_version" > /dev/null 2>&1
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

system=$(dev_token --actor system --sub insurer-feed --scope 'system/Patient.cruds system/DocumentReference.c system/Binary.c')
doctor=$(dev_token --actor professional --sub 810000000001 --profession 10)
# new_space NIR: a space opened by the feed, dmp-doctor its médecin traitant (or none
# with a second argument); prints its id.
new_space() {
    local gp='"generalPractitioner":[{"identifier":{"system":"urn:oid:1.2.250.1.71.4.2.1","value":"810000000001"}}],'
    [ $# -gt 1 ] && gp=""
    curl -sf -X POST "$base/Patient" -H "Authorization: Bearer $system" -H 'Content-Type: application/fhir+json' \
        -d "{\"resourceType\":\"Patient\",\"identifier\":[{\"system\":\"urn:oid:1.2.250.1.213.1.4.8\",\"value\":\"$1\"}],$gp\"name\":[{\"family\":\"Client\",\"given\":[\"Bibliothèque\"]}],\"birthDate\":\"1979-09-09\"}" \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])'
}
stranger=$(new_space 185067512345689 no-gp)
new_space 285067512345639 > /dev/null
new_space 190017512345655 > /dev/null

echo "== fhirpy $fhirpy_version"
"$venv/bin/python" "$here/clients/fhirpy_workflow.py" "$base" "$doctor" 285067512345639 "$stranger"
echo "== fhir-kit-client $fhir_kit_version"
cp "$here/clients/fhir_kit_workflow.mjs" "$node_dir/fhir_kit_workflow.mjs"
node "$node_dir/fhir_kit_workflow.mjs" "$base" "$doctor" 190017512345655 "$stranger"
