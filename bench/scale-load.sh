#!/usr/bin/env bash
# One load on a store `bench/scale.sh` left, with where the CPU went. Usage:
#   bench/scale-load.sh SCALE_DIR DATABASE get|search [SERVER FLAGS…]
# SCALE_DIR is the folder `bench/scale.sh` kept (SCALE_DIR=…: its issuer, its
# médecins traitants' tokens and reads); DATABASE the store it loaded (its SQLite
# file, or its PostgreSQL `…/scale` URL). A server of DMP_SERVER_BINARY (default:
# this tree's release build) serves it with the flags given; after a 3 s warm-up,
# `wrk -t2 -c$CONNECTIONS -d${SECONDS}s` (16, 14) runs the audited GET by id
# (bench/reads.lua) or the médecin traitant's search (bench/spaces.lua). Prints
# wrk's line, then the CPU each process group used over the middle of the run
# (cores, from /proc ticks; kernel workers left out) and the idle share; on PostgreSQL with
# `pg_stat_statements` loaded, the statements that took the most time.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
work=${1:?usage: bench/scale-load.sh SCALE_DIR DATABASE get|search [FLAGS…]}
database=${2:?usage: bench/scale-load.sh SCALE_DIR DATABASE get|search [FLAGS…]}
mode=${3:?usage: bench/scale-load.sh SCALE_DIR DATABASE get|search [FLAGS…]}
shift 3
connections=${CONNECTIONS:-16}
seconds=${SECONDS_OF_LOAD:-14}
[ "$seconds" -ge 8 ] || { echo "SECONDS_OF_LOAD: at least 8" >&2; exit 2; }
command -v wrk > /dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 2; }
[ -n "${DMP_SERVER_BINARY:-}" ] || cargo build --release --quiet --manifest-path "$root/Cargo.toml"
binary=${DMP_SERVER_BINARY:-$root/target/release/dmp-fhir-server}
source "$root/scripts/dev-server.sh"
dev_issuer "$work/issuer"
case $mode in
    get)
        script=$here/reads.lua
        case $database in
            postgres*) export BENCH_READS=$work/reads-postgres ;;
            *) export BENCH_READS=$work/reads-sqlite ;;
        esac
        [ -s "$BENCH_READS" ] || { echo "no $BENCH_READS: run bench/scale.sh with SCALE_DIR=$work first" >&2; exit 2; }
        ;;
    search)
        script=$here/spaces.lua
        export BENCH_PAIRS=$work/pairs
        ;;
    *)
        echo "get or search" >&2
        exit 2
        ;;
esac
server=""
trap '[ -n "$server" ] && kill "$server" 2> /dev/null' EXIT
start_server "$binary" "$database" "$work/scale-load-server.log" "$@"
wrk -t2 -c"$connections" -d3s -s "$script" "$base" > /dev/null
postgres=0
case $database in
    postgres*)
        if psql "$database" -qAtc "SELECT pg_stat_statements_reset()" > /dev/null 2>&1; then
            postgres=1
        fi
        ;;
esac
# The CPU over the run's middle (2 s in, 4 s before its end).
python3 - "$((seconds - 6))" > "$work/scale-load-cpu.txt" << 'PY' &
import collections, os, sys, time
def snap():
    ticks = collections.Counter()
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            for task in os.listdir(f'/proc/{pid}/task'):
                stat = open(f'/proc/{pid}/task/{task}/stat').read()
                name = stat[stat.find('(') + 1:stat.rfind(')')]
                fields = stat.rsplit(')', 1)[1].split()
                group = 'postgres' if name.startswith('postgres') else name
                group = 'server (actix-rt)' if group.startswith('actix-rt') else group
                ticks[group] += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    cpu = [int(x) for x in open('/proc/stat').readline().split()[1:]]
    return ticks, cpu
time.sleep(2)
before, cpu_before = snap()
seconds = float(sys.argv[1])
time.sleep(seconds)
after, cpu_after = snap()
hz = os.sysconf('SC_CLK_TCK')
total = sum(cpu_after) - sum(cpu_before)
idle = (cpu_after[3] - cpu_before[3]) + (cpu_after[4] - cpu_before[4])
print(f'idle: {idle / total * os.cpu_count():.2f} of {os.cpu_count()} cores')
# Kernel workers are left out: their ticks are not reliable on a virtual machine
# (they add up past the machine's cores).
used = {name: after[name] - before.get(name, 0) for name in after if not name.startswith('kworker')}
for name, value in sorted(used.items(), key=lambda item: -item[1])[:10]:
    if value:
        print(f'{name:28} {value / hz / seconds:.2f} cores')
PY
watcher=$!
wrk -t2 -c"$connections" -d"${seconds}s" -s "$script" "$base" | grep '^requests/s'
wait "$watcher"
cat "$work/scale-load-cpu.txt"
if [ "$postgres" = 1 ]; then
    psql "$database" -c "SELECT calls, round(total_exec_time::numeric) AS exec_ms, \
round(mean_exec_time::numeric, 3) AS mean_ms, rows, \
left(regexp_replace(query, '\s+', ' ', 'g'), 90) AS statement \
FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 8"
fi
