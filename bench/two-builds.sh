# Sourced by the scripts that measure two builds side by side (compare-builds.sh,
# large-bodies.sh), after their usage check: wrk, a working folder removed at exit
# with the server still running, the development issuer, the insurer's feed's and
# the médecin traitant's tokens, and `bench_patient`, their patient.
command -v wrk > /dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 2; }
work=$(mktemp -d)
server=""
trap '[ -n "$server" ] && kill $server 2>/dev/null; rm -rf "$work"' EXIT
source "$root/scripts/dev-server.sh"
dev_issuer "$work/issuer"
system=$(dev_token --actor system --sub insurer-feed)
doctor=$(dev_token --actor professional --sub 810000000001 --profession 10)

# bench_patient: creates, on the server at $base, the patient whose médecin traitant
# holds $doctor, and prints its id.
bench_patient() {
    curl -sf -X POST "$base/Patient" -H "Authorization: Bearer $system" -H 'Content-Type: application/fhir+json' \
        -d '{"resourceType":"Patient","identifier":[{"system":"urn:oid:1.2.250.1.213.1.4.8","value":"285067512345639"}],"name":[{"family":"Bench"}],"generalPractitioner":[{"identifier":{"system":"urn:oid:1.2.250.1.71.4.2.1","value":"810000000001"}}]}' \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])'
}
