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
source "$here/lib.sh"
pip_tool "$venv" fhirpy "$fhirpy_version"
npm_tool "$node_dir" "$fhir_kit_version" fhir-kit-client
start_dmp_server
doctor=$(dev_token --actor professional --sub 810000000001 --profession 10)
stranger=$(new_space Inconnue 185067512345689 no-gp)
new_space fhirpy 285067512345639 > /dev/null
new_space fhir-kit-client 190017512345655 > /dev/null

echo "== fhirpy $fhirpy_version"
"$venv/bin/python" "$here/clients/fhirpy_workflow.py" "$base" "$doctor" 285067512345639 "$stranger"
echo "== fhir-kit-client $fhir_kit_version"
cp "$here/clients/fhir_kit_workflow.mjs" "$node_dir/fhir_kit_workflow.mjs"
node "$node_dir/fhir_kit_workflow.mjs" "$base" "$doctor" 190017512345655 "$stranger"
