#!/usr/bin/env bash
# SMART App Launch (R-ACT-4) with a third-party OAuth client: Authlib (PyPI) runs the
# standalone patient launch with PKCE against the server, then reads the space
# through the granted scopes and is refused beyond them (conformance/clients/
# smart_authlib.py). Fails if a step does not behave.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
work="$here/work/smart"
venv="$here/.venv-smart"
authlib_version=1.6.5
requests_version=2.32.3

rm -rf "$work" && mkdir -p "$work"
source "$here/lib.sh"
pip_tool "$venv" authlib "$authlib_version"
pip_tool "$venv" requests "$requests_version"
cat > "$work/apps.json" << 'APPS'
{ "apps": [ { "clientId": "conformance-authlib", "name": "Authlib (conformance)",
              "redirectUris": ["http://127.0.0.1:8765/callback"],
              "scopes": ["launch/patient", "offline_access", "patient/DocumentReference.rs", "patient/Patient.rs"] } ] }
APPS
start_dmp_server --app-catalogue "$work/apps.json" --notification-channel "file:$work/codes.jsonl"
nir=$(new_nir)
patient=$(curl -sf -X POST "$base/Patient" -H "Authorization: Bearer $system_token" -H 'Content-Type: application/fhir+json' \
    -d "{\"resourceType\":\"Patient\",\"identifier\":[{\"system\":\"urn:oid:1.2.250.1.213.1.4.8\",\"value\":\"$nir\"}],
         \"name\":[{\"family\":\"Scénario\",\"given\":[\"SMART\"]}],\"gender\":\"female\",\"birthDate\":\"1980-04-02\",
         \"telecom\":[{\"system\":\"email\",\"value\":\"smart.$nir@exemple.fr\"}]}" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
echo "== Authlib $authlib_version"
"$venv/bin/python" "$here/clients/smart_authlib.py" "$base" "$work/codes.jsonl" "$patient" "$nir"
