#!/usr/bin/env bash
# Runs the third-party sekmet-fhir harness (PyPI) against this server, built from the
# tree: its conformance_smoke scenario and our own DMP scenarios. Reports land in
# conformance/reports/; the run fails if a step fails that expected-failures.txt does
# not list with its reason.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
work="$here/work"
# CONFORMANCE_REPORTS: where the reports go (default: conformance/reports, committed).
reports=${CONFORMANCE_REPORTS:-$here/reports}
venv="$here/.venv"
sekmet_version="0.1.1"

rm -rf "$work" && mkdir -p "$work"
source "$here/lib.sh"
pip_tool "$venv" sekmet-fhir "$sekmet_version"
DMP_LOG=info start_dmp_server
token() { dev_token "$@"; }
nir=$(new_nir)

# The smoke's paging step needs two Patients; its second one comes from a transaction
# that also posts an Observation, which this server does not serve. A store with data
# in it is the normal case, so one Patient is there before the harness starts.
curl -sf -X POST "$base/Patient" -H "Authorization: Bearer $system_token" -H 'Content-Type: application/fhir+json' \
    -d '{"resourceType":"Patient","name":[{"family":"Existant","given":["Patient"]}],"gender":"male"}' > /dev/null

# settings FILE [PATIENT_ID]: the harness's peers, dmp-patient holding PATIENT_ID's space.
settings() {
    cat > "$1" <<YAML
data_dir: $work/sekmet-data
base_url: http://127.0.0.1:1/fhir
peers:
  dmp-system:
    base_url: $base
    auth: {type: bearer, token: "$system_token"}
  dmp-doctor:
    base_url: $base
    auth: {type: bearer, token: "$(token --actor professional --sub 810000000001 --profession 10 --specialty SM54)"}
  dmp-colleague:
    base_url: $base
    auth: {type: bearer, token: "$(token --actor professional --sub 810000000002 --profession 10)"}
  dmp-emergency:
    base_url: $base
    auth: {type: bearer, token: "$(token --actor professional --sub 810000000003 --profession 10 --purpose-of-use bris_de_glace --access-reason 'urgence vitale')"}
  dmp-patient:
    base_url: $base
    auth: {type: bearer, token: "$(token --actor patient --sub "user-${2:-nobody}" --patient "${2:-nobody}")"}
  dmp-anonymous:
    base_url: $base
YAML
}
settings "$work/settings.yaml"

cd "$work"
status=0
# run NAME PEER SETTINGS [ARGS…]: one scenario, its results.json saved in reports/.
run() {
    local name=$1 peer=$2 config=$3 report
    shift 3
    report=$(basename "$name" .yaml)
    "$venv/bin/sekmet" scenario run "$name" --peer "$peer" --no-serve --config "$config" \
        --report-dir "$work/reports-$report" "$@" > "$work/$report.log" 2>&1 || true
    cp "$work"/reports-"$report"/*/results.json "$reports/$report.json"
}
mkdir -p "$reports" && rm -f "$reports"/*.json "$reports/SUMMARY.md"
# The harness's own library, as the insurer's feed (the one actor that writes Patients).
for scenario in $("$venv/bin/sekmet" scenario list 2> /dev/null | awk '{ print $1 }'); do
    run "$scenario" dmp-system "$work/settings.yaml"
done
# Ours, each on a space of its own.
run "$here/scenarios/dmp_document_deposit.yaml" dmp-doctor "$work/settings.yaml" --var "nir=$nir"
for scenario in dmp_access_rules dmp_messaging dmp_lifecycle; do
    patient=$(new_space "$scenario")
    settings "$work/settings-$scenario.yaml" "$patient"
    run "$here/scenarios/$scenario.yaml" dmp-doctor "$work/settings-$scenario.yaml" --var "patient=$patient"
done
python3 "$here/summarise.py" "$reports" "$here/expected-failures.txt" > "$reports/SUMMARY.md" || status=$?
cat "$reports/SUMMARY.md"
exit $status
