#!/usr/bin/env bash
# Runs the third-party sekmet-fhir harness (PyPI) against this server, built from the
# tree: its conformance_smoke scenario and our own DMP scenarios. Reports land in
# conformance/reports/; the run fails if a step fails that expected-failures.txt does
# not list with its reason.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
work="$here/work"
venv="$here/.venv"
sekmet_version="0.1.1"

rm -rf "$work" && mkdir -p "$work"
if [ ! -x "$venv/bin/sekmet" ] || ! "$venv/bin/pip" show sekmet-fhir 2>/dev/null | grep -q "^Version: $sekmet_version$"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "sekmet-fhir==$sekmet_version"
fi

cargo build --release --quiet --manifest-path "$root/Cargo.toml"
source "$root/scripts/dev-server.sh"
dev_issuer "$work/issuer"
token() { dev_token "$@"; }
server=""
trap '[ -n "$server" ] && kill $server 2>/dev/null || true' EXIT
DMP_LOG=info start_server "$root/target/release/dmp-fhir-server" "$work/dmp.sqlite" "$work/server.log"

nir=$(python3 -c '
import random
body = "2" + "85" + "06" + "75" + f"{random.randint(1, 999):03d}" + f"{random.randint(1, 999):03d}"
print(body + f"{97 - int(body) % 97:02d}")')

system_token=$(token --actor system --sub insurer-feed --scope 'system/Patient.cruds system/DocumentReference.c system/Binary.c')
# The smoke's paging step needs two Patients; its second one comes from a transaction
# that also posts an Observation, which this server does not serve. A store with data
# in it is the normal case, so one Patient is there before the harness starts.
curl -sf -X POST "$base/Patient" -H "Authorization: Bearer $system_token" -H 'Content-Type: application/fhir+json' \
    -d '{"resourceType":"Patient","name":[{"family":"Existant","given":["Patient"]}],"gender":"male"}' > /dev/null

cat > "$work/settings.yaml" <<YAML
data_dir: $work/sekmet-data
base_url: http://127.0.0.1:1/fhir
peers:
  dmp-system:
    base_url: $base
    auth: {type: bearer, token: "$system_token"}
  dmp-doctor:
    base_url: $base
    auth: {type: bearer, token: "$(token --actor professional --sub 810000000001 --profession 10 --specialty SM54)"}
  dmp-anonymous:
    base_url: $base
YAML

cd "$work"
status=0
run() {
    local name=$1 peer=$2
    shift 2
    "$venv/bin/sekmet" scenario run "$name" --peer "$peer" --no-serve --config "$work/settings.yaml" \
        --report-dir "$work/reports-$(basename "$name" .yaml)" "$@" > "$work/$(basename "$name" .yaml).log" 2>&1 || true
    cp "$work"/reports-"$(basename "$name" .yaml)"/*/results.json "$here/reports/$(basename "$name" .yaml).json"
}
mkdir -p "$here/reports"
run conformance_smoke dmp-system
run "$here/scenarios/dmp_document_deposit.yaml" dmp-doctor --var "nir=$nir"
python3 "$here/summarise.py" "$here/reports" "$here/expected-failures.txt" > "$here/reports/SUMMARY.md" || status=$?
cat "$here/reports/SUMMARY.md"
exit $status
