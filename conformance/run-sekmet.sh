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
if [ ! -x "$venv/bin/sekmet" ] || ! "$venv/bin/pip" show sekmet-fhir 2>/dev/null | grep -q "^Version: $sekmet_version$"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "sekmet-fhir==$sekmet_version"
fi

# DMP_SERVER_BINARY: a server binary already built (CI uses the test profile's);
# by default the release build of the tree.
if [ -z "${DMP_SERVER_BINARY:-}" ]; then
    cargo build --release --quiet --manifest-path "$root/Cargo.toml"
    DMP_SERVER_BINARY=$root/target/release/dmp-fhir-server
fi
source "$root/scripts/dev-server.sh"
dev_issuer "$work/issuer"
token() { dev_token "$@"; }
server=""
trap '[ -n "$server" ] && kill $server 2>/dev/null || true' EXIT
DMP_LOG=info start_server "$DMP_SERVER_BINARY" "$work/dmp.sqlite" "$work/server.log"

# A valid INS-NIR (13 digits and their key), fresh for every space.
new_nir() {
    python3 -c '
import random
body = "2" + "85" + "06" + "75" + f"{random.randint(1, 999):03d}" + f"{random.randint(1, 999):03d}"
print(body + f"{97 - int(body) % 97:02d}")'
}
nir=$(new_nir)

system_token=$(token --actor system --sub insurer-feed --scope 'system/Patient.cruds system/DocumentReference.c system/Binary.c')
# A space opened by the insurer's feed, its médecin traitant dmp-doctor: prints its id.
new_space() {
    curl -sf -X POST "$base/Patient" -H "Authorization: Bearer $system_token" -H 'Content-Type: application/fhir+json' \
        -d "{\"resourceType\":\"Patient\",\"identifier\":[{\"system\":\"urn:oid:1.2.250.1.213.1.4.8\",\"value\":\"$(new_nir)\"}],
             \"name\":[{\"family\":\"Scénario\",\"given\":[\"$1\"]}],\"gender\":\"female\",\"birthDate\":\"1980-04-02\",
             \"generalPractitioner\":[{\"identifier\":{\"system\":\"urn:oid:1.2.250.1.71.4.2.1\",\"value\":\"810000000001\"}}]}" \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])'
}
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
