#!/usr/bin/env bash
# The portal (R-UI-1) in a real browser: Debian's Chromium (installed here when
# missing and this runs as root) driven by playwright-core (npm), axe-core (npm) on
# every page, screenshots of each page in the reports (conformance/clients/
# portal_browser.mjs). Fails if a step does not behave or a page has a WCAG 2.1
# A/AA violation.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
work="$here/work/portal"
node_dir="$here/.node-portal"
reports=${CONFORMANCE_REPORTS:-$here/reports}/portal
playwright_version=1.65.2
axe_version=4.14.1

rm -rf "$work" && mkdir -p "$work" "$reports"
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium > "$work/apt.log" 2>&1 \
            || { echo "cannot install Debian's chromium (see $work/apt.log)" >&2; exit 1; }
    else
        echo "Debian's chromium is needed: apt-get install chromium" >&2
        exit 1
    fi
fi
source "$here/lib.sh"
npm_tool "$node_dir" "$playwright_version" playwright-core
npm_tool "$node_dir" "$axe_version" axe-core
start_dmp_server --notification-channel "file:$work/codes.jsonl"
nir=$(new_nir)
patient=$(curl -sf -X POST "$base/Patient" -H "Authorization: Bearer $system_token" -H 'Content-Type: application/fhir+json' \
    -d "{\"resourceType\":\"Patient\",\"identifier\":[{\"system\":\"urn:oid:1.2.250.1.213.1.4.8\",\"value\":\"$nir\"}],
         \"name\":[{\"family\":\"Portail\",\"given\":[\"Alice\"]}],\"gender\":\"female\",\"birthDate\":\"1980-04-02\",
         \"generalPractitioner\":[{\"identifier\":{\"system\":\"urn:oid:1.2.250.1.71.4.2.1\",\"value\":\"810000000001\"}}],
         \"telecom\":[{\"system\":\"email\",\"value\":\"portail.$nir@exemple.fr\"}]}" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
doctor=$(dev_token --actor professional --sub 810000000001 --profession 10)
colleague=$(dev_token --actor professional --sub 810000000077 --profession 10)
document=$(fhir_post "$base" "$doctor" DocumentReference "$(document_json "$patient")" | id_of)
curl -sf -X POST "$base/Communication" -H "Authorization: Bearer $doctor" -H 'Content-Type: application/fhir+json' \
    -d "{\"resourceType\":\"Communication\",\"status\":\"completed\",\"subject\":{\"reference\":\"Patient/$patient\"},
         \"sender\":{\"identifier\":{\"system\":\"urn:oid:1.2.250.1.71.4.2.1\",\"value\":\"810000000001\"}},
         \"recipient\":[{\"reference\":\"Patient/$patient\"}],\"sent\":\"2026-11-02T09:00:00Z\",
         \"payload\":[{\"contentString\":\"Bonjour, vos résultats sont dans votre espace.\"}]}" > /dev/null
echo "== Chromium $(/usr/bin/chromium --version 2> /dev/null | awk '{print $2}'), playwright-core $playwright_version, axe-core $axe_version"
cp "$here/clients/portal_browser.mjs" "$node_dir/portal_browser.mjs"
node "$node_dir/portal_browser.mjs" "$base" "$work/codes.jsonl" "$nir" "$reports" "$colleague" "$patient" "$document" \
    "$node_dir/node_modules/axe-core/axe.min.js" "$doctor"
