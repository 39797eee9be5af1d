#!/usr/bin/env bash
# The ANS PDSm / PDSm4DMP requests (SPEC §10) as the guides publish them
# (conformance/pdsm/examples/, a valid INS for the guides' placeholder): ITI-65 (TD2,
# TD2.1), ITI-105, ITI-67 (TD3.1a/b), ITI-68 (TD3.2), ITI-66, the metadata updates
# (TD3.3a–d), the rules on these paths and bad input, each outcome read back
# (conformance/pdsm.py); then a practice application's PDSm day through the fhirpy
# client library (conformance/clients/fhirpy_pdsm.py). The report goes to
# conformance/reports/pdsm.md (or CONFORMANCE_REPORTS); fails if a step misbehaves.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
reports=${CONFORMANCE_REPORTS:-$here/reports}
work="$here/work/pdsm"
venv="$here/.venv-clients"
fhirpy_version=2.3.1

rm -rf "$work" && mkdir -p "$work" "$reports"
source "$here/lib.sh"
pip_tool "$venv" fhirpy "$fhirpy_version"
start_dmp_server
NIR=$(new_nir)
SPACE=$(new_space PDSm "$NIR")
TOKEN_DOCTOR=$(dev_token --actor professional --sub 810000000001 --profession 10)
TOKEN_PATIENT=$(dev_token --actor patient --sub "user-$SPACE" --patient "$SPACE")
TOKEN_STRANGER=$(dev_token --actor professional --sub 810000000009 --profession 10)
export TOKEN_DOCTOR TOKEN_PATIENT TOKEN_STRANGER SPACE NIR
echo "== the published requests"
python3 "$here/pdsm.py" "$base" "$here/pdsm/examples" "$reports/pdsm.md"
echo "== fhirpy $fhirpy_version, as a practice application"
client_nir=$(new_nir)
other_nir=$(new_nir)
new_space fhirpy-PDSm "$client_nir" > /dev/null
new_space Autre "$other_nir" no-gp > /dev/null
"$venv/bin/python" "$here/clients/fhirpy_pdsm.py" "$base" "$TOKEN_DOCTOR" "$client_nir" "$here/pdsm/examples" "$other_nir"
