# Helpers sourced by the bench and conformance scripts: a development issuer, tokens,
# and a release server on a free loopback port. Source it after setting $root.

# dev_issuer DIR: a development issuer (key and JWKS) in DIR.
dev_issuer() {
    python3 "$root/scripts/dev-issuer.py" --dir "$1" init > /dev/null
    DEV_ISSUER_DIR=$1
}

# dev_token ARGS…: a token of the development issuer (see scripts/dev-issuer.py).
dev_token() {
    python3 "$root/scripts/dev-issuer.py" --dir "$DEV_ISSUER_DIR" token --lifetime 7200 "$@"
}

# start_server BINARY DATABASE LOG_FILE [FLAGS…]: starts BINARY on a free port, on
# DATABASE (a SQLite file, or a URL such as postgres://…),
# trusting the development issuer, with any further FLAGS; sets $server (pid) and
# $base, and waits until it answers.
start_server() {
    local binary=$1 database=$2 log=$3 port
    shift 3
    case $database in
        *://*) ;;
        *) database="sqlite://$database" ;;
    esac
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    base="http://127.0.0.1:$port"
    DMP_LOG=${DMP_LOG:-warn} "$binary" --listen "127.0.0.1:$port" --database-url "$database" \
        --trusted-issuer "https://dev-issuer.localhost,$DEV_ISSUER_DIR/jwks.json,dmp-fhir-server" "$@" > "$log" 2>&1 &
    server=$!
    for _ in $(seq 1 100); do
        curl -sf "$base/metadata" > /dev/null && return 0
        sleep 0.1
    done
    echo "the server did not start; see $log" >&2
    return 1
}

# fhir_post BASE TOKEN TYPE BODY: POSTs a resource (without a token when TOKEN is
# empty) and prints the answer.
fhir_post() {
    curl -sf -X POST "$1/$3" ${2:+-H "Authorization: Bearer $2"} -H 'Content-Type: application/fhir+json' -d "$4"
}

# id_of: the id of the resource read on standard input.
id_of() {
    python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])'
}

# patient_json [NIR]: a Patient (INS 285067512345639 by default) whose médecin
# traitant is IdNat_PS 810000000001.
patient_json() {
    echo "{\"resourceType\":\"Patient\",\"identifier\":[{\"system\":\"urn:oid:1.2.250.1.213.1.4.8\",\"value\":\"${1:-285067512345639}\"}],\"name\":[{\"family\":\"Bench\",\"given\":[\"Mark\"]}],\"birthDate\":\"1985-06-15\",\"generalPractitioner\":[{\"identifier\":{\"system\":\"urn:oid:1.2.250.1.71.4.2.1\",\"value\":\"810000000001\"}}]}"
}

# document_json PATIENT_ID: a consultation report of that patient, content inline.
document_json() {
    echo "{\"resourceType\":\"DocumentReference\",\"status\":\"current\",\"type\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"11488-4\"}]},\"subject\":{\"reference\":\"Patient/$1\"},\"date\":\"2024-01-02T10:00:00+01:00\",\"content\":[{\"attachment\":{\"contentType\":\"application/pdf\",\"data\":\"JVBERi0xLjQK\"}}]}"
}
