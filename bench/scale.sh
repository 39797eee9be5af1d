#!/usr/bin/env bash
# Search latency as the store grows (docs/SCALING.md). Usage:
#   bench/scale.sh sqlite|postgres SIZE...
# SIZEs are numbers of documents, ascending (e.g. 100000 1000000 10000000). For each,
# the missing spaces (20 documents each) are loaded with `dmp-fhir-server generate`
# (a new seed per step, so the store only grows), then:
#   - wrk runs the médecin traitant's `DocumentReference?patient=…&_count=20&_total=accurate`
#     over 200 spaces, each request with the token of that space's médecin traitant
#     (bench/spaces.lua: requests/s, p50, p95, p99), audited and rule-checked as always;
#   - wrk runs the same médecins traitants' audited GET of one document of each of
#     those spaces (bench/reads.lua: requests/s, p50, p99);
#   - a server started with --log-query-plans answers one such search, and its plans
#     of the page and the total are saved and checked for full scans.
# Environment: DMP_SERVER_BINARY (a binary already built; default: this tree's release
# build), SCALE_SECONDS (wrk duration, default 20), SCALE_CONNECTIONS (16),
# SCALE_DIR (where the store and the results go; default a temporary folder, removed),
# DMP_BENCH_POSTGRES_URL (an existing server's maintenance database; default: a
# throwaway PostgreSQL 15 with the settings below).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
backend=${1:?usage: bench/scale.sh sqlite|postgres SIZE...}
shift
[ $# -gt 0 ] || { echo "usage: bench/scale.sh sqlite|postgres SIZE..." >&2; exit 2; }
# The load spreads over 200 spaces of the first step.
[ "$1" -ge 4000 ] || { echo "the first SIZE must be at least 4000 documents (200 spaces)" >&2; exit 2; }
seconds=${SCALE_SECONDS:-20}
connections=${SCALE_CONNECTIONS:-16}
documents_per_patient=20
command -v wrk > /dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 2; }

if [ -n "${SCALE_DIR:-}" ]; then
    work=$SCALE_DIR
    mkdir -p "$work"
    keep=1
else
    work=$(mktemp -d)
    keep=0
fi
server=""
own_postgres=0
cleanup() {
    [ -n "$server" ] && kill "$server" 2> /dev/null
    if [ "$own_postgres" = 1 ]; then pg_stop; fi
    [ "$keep" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT

[ -n "${DMP_SERVER_BINARY:-}" ] || cargo build --release --quiet --manifest-path "$root/Cargo.toml"
binary=${DMP_SERVER_BINARY:-$root/target/release/dmp-fhir-server}
source "$root/scripts/dev-server.sh"

case $backend in
    sqlite)
        database="sqlite://$work/scale.sqlite"
        jobs=1
        store_size() { du -cb "$work"/scale.sqlite* | tail -1 | cut -f1; }
        count_rows() { python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])' "$work/scale.sqlite" "$1"; }
        ;;
    postgres)
        if [ -z "${DMP_BENCH_POSTGRES_URL:-}" ]; then
            # A production-like memory budget for a 24 GiB machine; everything else is
            # PostgreSQL's default (fsync and synchronous_commit on). The server's
            # user must be able to go through the work folder to its data folder.
            chmod 711 "$work"
            PG_PARENT_DIR=$work PG_SERVER_OPTIONS="-c shared_buffers=4GB -c effective_cache_size=16GB \
-c maintenance_work_mem=1GB -c max_wal_size=4GB -c checkpoint_timeout=30min" \
                source "$root/scripts/throwaway-postgres.sh"
            own_postgres=1
            DMP_BENCH_POSTGRES_URL=$DMP_TEST_POSTGRES_URL
        fi
        psql "$DMP_BENCH_POSTGRES_URL" -qtc "SELECT 1 FROM pg_database WHERE datname = 'scale'" | grep -q 1 \
            || psql "$DMP_BENCH_POSTGRES_URL" -qc "CREATE DATABASE scale"
        database="${DMP_BENCH_POSTGRES_URL%/*}/scale"
        # Two writers: the database, not the generator, is the bottleneck of a load.
        jobs=2
        store_size() { psql "$database" -qtAc "SELECT pg_database_size(current_database())"; }
        count_rows() { psql "$database" -qtAc "$1"; }
        ;;
    *)
        echo "backend: sqlite or postgres" >&2
        exit 2
        ;;
esac

# Two hundred spaces of the first load and their médecins traitants (IdNat_PS 8100 +
# the space number on 8 digits, as the generator assigns them).
dev_issuer "$work/issuer"
if [ ! -s "$work/pairs" ]; then
    for n in $(seq 0 199); do
        printf '%s gen-1-%d\n' "$(dev_token --actor professional --sub "$(printf '8100%08d' "$n")" --profession 10)" "$n"
    done > "$work/pairs"
fi

results=$work/results-$backend.md
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ { print $2 }') GiB, $(uname -m); $backend; wrk -t2 -c$connections -d${seconds}s; $(date -u +%Y-%m-%d)" | tee -a "$results"
echo "| documents | resources stored | load of the step | store size | searches/s | p50 | p95 | p99 | full scans in plans | GET/s | p50 | p99 |" | tee -a "$results"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|" | tee -a "$results"

loaded_patients=$( [ -s "$work/loaded-$backend" ] && cat "$work/loaded-$backend" || echo 0 )
seed=$(( $( [ -s "$work/seed-$backend" ] && cat "$work/seed-$backend" || echo 0 ) ))
for size in "$@"; do
    patients=$((size / documents_per_patient))
    missing=$((patients - loaded_patients))
    load="-"
    if [ "$missing" -gt 0 ]; then
        seed=$((seed + 1))
        "$binary" --database-url "$database" generate --patients "$missing" \
            --documents-per-patient "$documents_per_patient" --seed "$seed" --jobs "$jobs" 2>&1 \
            | tr '\r' '\n' | tail -1 | tee "$work/load-$size.txt"
        load=$(sed -E 's/.* in ([0-9.]+ s) \(([0-9]+) documents\/s.*/\1, \2 documents\/s/' "$work/load-$size.txt")
        loaded_patients=$patients
        echo "$loaded_patients" > "$work/loaded-$backend"
        echo "$seed" > "$work/seed-$backend"
    fi
    documents=$(count_rows "SELECT COUNT(*) FROM resources WHERE res_type = 'DocumentReference'")
    resources=$(count_rows "SELECT COUNT(*) FROM resources")

    start_server "$binary" "$database" "$work/server.log"
    BENCH_PAIRS=$work/pairs wrk -t2 -c"$connections" -d3s -s "$here/spaces.lua" "$base" > /dev/null
    measured=$(BENCH_PAIRS=$work/pairs wrk -t2 -c"$connections" -d"${seconds}s" -s "$here/spaces.lua" "$base" | grep '^requests/s')
    # One document of each space that its médecin traitant may read (the first of
    # their search), read by id.
    if [ ! -s "$work/reads-$backend" ]; then
        while read -r token patient; do
            id=$(curl -sf -H "Authorization: Bearer $token" "$base/DocumentReference?patient=$patient&_count=1" \
                | python3 -c 'import json, sys; print(json.load(sys.stdin)["entry"][0]["resource"]["id"])')
            printf '%s DocumentReference/%s\n' "$token" "$id"
        done < "$work/pairs" > "$work/reads-$backend"
    fi
    BENCH_READS=$work/reads-$backend wrk -t2 -c"$connections" -d3s -s "$here/reads.lua" "$base" > /dev/null
    read_measured=$(BENCH_READS=$work/reads-$backend wrk -t2 -c"$connections" -d"${seconds}s" -s "$here/reads.lua" "$base" | grep '^requests/s')
    kill "$server"; wait "$server" 2> /dev/null || true; server=""

    DMP_LOG=warn,dmp_fhir_server::plan=info start_server "$binary" "$database" "$work/plans.log" \
        --log-query-plans true --log-format json
    read -r token patient < <(sed -n 5p "$work/pairs")
    curl -sf -o /dev/null -H "Authorization: Bearer $token" "$base/DocumentReference?patient=$patient&_count=20&_total=accurate"
    kill "$server"; wait "$server" 2> /dev/null || true; server=""
    scans=$(python3 - "$work/plans.log" "$work/plans-$backend-$size.txt" "$backend" << 'PY'
import json, sys
log, out, backend = sys.argv[1:]
scans = 0
with open(out, "w") as plans:
    for line in open(log):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        fields = event.get("fields", {})
        statement = fields.get("statement", "")
        if event.get("target") != "dmp_fhir_server::plan" or "resource_compartment" not in statement \
                or "FROM resources r WHERE r.res_type" not in statement:
            continue
        steps = fields["plan"].split(" | ")
        plans.write(statement + "\n" + "\n".join(steps) + "\n\n")
        # `SCAN (subquery-N)` reads back what the statement materialised (the
        # window counting the matches), not a table.
        scans += sum(1 for step in steps
                     if ("Seq Scan" in step if backend == "postgres"
                         else step.strip().startswith("SCAN ")
                         and not step.strip().startswith("SCAN (subquery-")))
print(scans)
PY
)
    read -r _ rps _ p50 _ p95 _ p99 _ errors _ non2xx <<< "$measured"
    [ "$errors" = 0 ] && [ "$non2xx" = 0 ] || echo "warning: searches: $errors socket errors, $non2xx non-2xx answers" >&2
    read -r _ read_rps _ read_p50 _ _ _ read_p99 _ errors _ non2xx <<< "$read_measured"
    [ "$errors" = 0 ] && [ "$non2xx" = 0 ] || echo "warning: reads: $errors socket errors, $non2xx non-2xx answers" >&2
    printf '| %s | %s | %s | %s MB | %s | %s ms | %s ms | %s ms | %s | %s | %s ms | %s ms |\n' "$documents" "$resources" "$load" \
        "$(( $(store_size) / 1000000 ))" "$rps" "$p50" "$p95" "$p99" "$scans" "$read_rps" "$read_p50" "$read_p99" | tee -a "$results"
done
echo "plans: $work/plans-$backend-*.txt"
