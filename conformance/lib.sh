# Helpers sourced by the conformance runs, after they set $root and $work.

source "$root/scripts/dev-server.sh"

# pip_tool VENV PACKAGE VERSION: PACKAGE==VERSION in the virtualenv VENV, installed
# once.
pip_tool() {
    local venv=$1 package=$2 version=$3
    if ! "$venv/bin/pip" show "$package" 2> /dev/null | grep -q "^Version: $version$"; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet "$package==$version"
    fi
}

# npm_tool DIR VERSION PACKAGE…: the npm PACKAGEs at VERSION under DIR, installed once
# (checked on the first).
npm_tool() {
    local dir=$1 version=$2
    shift 2
    if [ ! -f "$dir/node_modules/$1/package.json" ] \
        || ! grep -q "\"version\": \"$version\"" "$dir/node_modules/$1/package.json"; then
        mkdir -p "$dir"
        npm install --silent --no-audit --no-fund --prefix "$dir" "${@/%/@$version}" > /dev/null 2>&1
    fi
}

# start_dmp_server [FLAGS…]: the server (DMP_SERVER_BINARY, a binary already built, as CI passes
# the test profile's; by default the tree's release build) on a fresh SQLite file in
# $work, trusting a development issuer in $work/issuer; sets $base and $server, stops
# it on exit, and sets $system_token (the insurer's feed).
start_dmp_server() {
    if [ -z "${DMP_SERVER_BINARY:-}" ]; then
        cargo build --release --quiet --manifest-path "$root/Cargo.toml"
        DMP_SERVER_BINARY=$root/target/release/dmp-fhir-server
    fi
    dev_issuer "$work/issuer"
    server=""
    trap '[ -n "$server" ] && kill $server 2> /dev/null || true' EXIT
    start_server "$DMP_SERVER_BINARY" "$work/dmp.sqlite" "$work/server.log" "$@"
    system_token=$(dev_token --actor system --sub insurer-feed \
        --scope 'system/Patient.cruds system/DocumentReference.c system/Binary.c')
}

# new_nir: a valid INS-NIR (13 digits and their key), a new one each time.
new_nir() {
    python3 -c '
import random
body = "2" + "85" + "06" + "75" + f"{random.randint(1, 999):03d}" + f"{random.randint(1, 999):03d}"
print(body + f"{97 - int(body) % 97:02d}")'
}

# new_space GIVEN [NIR] [no-gp]: a space opened by the insurer's feed (a Patient with
# that INS, a fresh one by default), dmp-doctor (IdNat_PS 810000000001) its médecin
# traitant unless no-gp; prints its id.
new_space() {
    local gp='"generalPractitioner":[{"identifier":{"system":"urn:oid:1.2.250.1.71.4.2.1","value":"810000000001"}}],'
    [ "${3:-}" = no-gp ] && gp=""
    curl -sf -X POST "$base/Patient" -H "Authorization: Bearer $system_token" -H 'Content-Type: application/fhir+json' \
        -d "{\"resourceType\":\"Patient\",\"identifier\":[{\"system\":\"urn:oid:1.2.250.1.213.1.4.8\",\"value\":\"${2:-$(new_nir)}\"}],$gp
             \"name\":[{\"family\":\"Scénario\",\"given\":[\"$1\"]}],\"gender\":\"female\",\"birthDate\":\"1980-04-02\"}" \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])'
}
