#!/usr/bin/env bash
# A one-node SLURM with accounting on this host, for the slurm executor's tests and for trying the executor:
# munge, MariaDB, slurmdbd, slurmctld and slurmd, all as root, all from Debian's packages.
#
#   tests/cluster/slurm.sh up       install the packages when missing (apt, as root), start what is not running
#   tests/cluster/slurm.sh down     cancel the cluster's jobs, then stop what `up` started (by its pid files)
#   tests/cluster/slurm.sh status   each daemon's state; exit 0 when all five run
#
# `up` and `status` end with the line `SLURM_CONF=...`: export it to point sbatch, squeue, sacct and the
# harness at this cluster:  eval "export $(tests/cluster/slurm.sh up | tail -1)"
#
# The configuration files are this folder's *.in, filled in for the host into $GIVA_SLURM_DIR/etc; state, logs,
# sockets and pid files live under $GIVA_SLURM_DIR (default ${TMPDIR:-/tmp}/giva-bench-slurm), nothing under
# /etc or /var. Ports: $GIVA_SLURM_PORT (default 6817) for slurmctld, +1 slurmd, +2 slurmdbd, +3 MariaDB (on
# 127.0.0.1 only). `up` is idempotent and `up`/`down` hold a lock, so two callers do not race.
#
# Exit status: 0 done; 1 a daemon did not start (the end of its log on stderr); 2 bad usage; 3 not root, or the
# packages are missing and apt-get cannot install them: the tests skip on 3 and fail on anything else.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=${GIVA_SLURM_DIR:-${TMPDIR:-/tmp}/giva-bench-slurm}
PORT=${GIVA_SLURM_PORT:-6817}
PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)  # in start order; stopped in reverse
export PATH=$PATH:/usr/sbin:/sbin
export SLURM_CONF=$DIR/etc/slurm.conf

say() { echo "slurm.sh: $*" >&2; }

# --- packages ------------------------------------------------------------------------------------------------

packages_missing() {
    local binary
    for binary in munged mariadbd mariadb-install-db slurmdbd slurmctld slurmd sbatch sacct scontrol; do
        command -v "$binary" >/dev/null || return 0
    done
    return 1
}

install_packages() {
    packages_missing || return 0
    # Debian's maintainer scripts would start munge and MariaDB as system services; policy-rc.d answering 101
    # stops that (Docker images ship one). Where there is none, one is in place for this install only.
    local policy=/usr/sbin/policy-rc.d own_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own_policy=1
    fi
    local apt=(apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${PACKAGES[@]}")
    local ok=1
    say "installing ${PACKAGES[*]}"
    if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" >"$DIR/log/apt.log" 2>&1; then
        # a stale or missing package list: refresh it once and try again
        apt-get -o DPkg::Lock::Timeout=600 update >>"$DIR/log/apt.log" 2>&1 &&
            DEBIAN_FRONTEND=noninteractive "${apt[@]}" >>"$DIR/log/apt.log" 2>&1 || ok=""
    fi
    [ -n "$own_policy" ] && rm -f "$policy"
    if [ -z "$ok" ] || packages_missing; then
        say "apt-get could not install ${PACKAGES[*]}: $(tail -n 1 "$DIR/log/apt.log") (full log: $DIR/log/apt.log)"
        exit 3
    fi
}

# --- configuration -------------------------------------------------------------------------------------------

fill() {  # fill TEMPLATE DEST MODE: this folder's TEMPLATE.in with the @NAMES@ of this host
    local cpus mem_mb
    cpus=$(nproc)
    cpus=$((cpus > 8 ? cpus : 8))
    mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    sed -e "s|@DIR@|$DIR|g" -e "s|@HOST@|$(hostname -s)|g" -e "s|@CPUS@|$cpus|g" -e "s|@MEM_MB@|$mem_mb|g" \
        -e "s|@CTLD_PORT@|$PORT|g" -e "s|@SLURMD_PORT@|$((PORT + 1))|g" -e "s|@DBD_PORT@|$((PORT + 2))|g" \
        -e "s|@DB_PORT@|$((PORT + 3))|g" -e "s|@DB_PASS@|$(cat "$DIR/etc/db-pass")|g" \
        "$HERE/$1.in" >"$2.tmp"
    chmod "$3" "$2.tmp"
    mv "$2.tmp" "$2"
}

configure() {
    mkdir -p "$DIR"/{etc,run,log,pids,munge,mysql,ctld-state,slurmd-spool}
    chmod 700 "$DIR/munge" "$DIR/etc"
    [ -s "$DIR/etc/db-pass" ] || (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$DIR/etc/db-pass")
    [ -s "$DIR/munge/munge.key" ] || (umask 077 && head -c 1024 /dev/urandom >"$DIR/munge/munge.key")
    chmod 400 "$DIR/munge/munge.key"
    fill slurm.conf "$DIR/etc/slurm.conf" 644
    fill slurmdbd.conf "$DIR/etc/slurmdbd.conf" 600  # slurmdbd refuses a readable one: it holds the password
    fill mariadb-init.sql "$DIR/etc/mariadb-init.sql" 600
}

# --- processes -----------------------------------------------------------------------------------------------

pid_of() {  # the pid `up` recorded for NAME, if that process still runs that program (not a reused pid)
    local file="$DIR/pids/$1.pid" pid
    [ -s "$file" ] || return 1
    pid=$(cat "$file")
    [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$(readlink -f "$(command -v "$1")")" ] || return 1
    echo "$pid"
}

start() {  # start NAME ARGS...: NAME in the foreground of its own session, its pid recorded
    if pid_of "$1" >/dev/null; then
        return 0
    fi
    local name=$1
    shift
    setsid "$name" "$@" >>"$DIR/log/$name.out" 2>&1 </dev/null 9>&- &  # 9: the lock, not to be inherited
    echo $! >"$DIR/pids/$name.pid"
    STARTED+=("$name")
}

wait_for() {  # wait_for NAME SECONDS CHECK...: until CHECK succeeds; fail with NAME's log when it dies or times out
    local name=$1 deadline=$((SECONDS + $2)) pid
    shift 2
    pid=$(cat "$DIR/pids/$name.pid")  # while it starts, the process may not have become NAME yet (setsid's exec)
    until "$@" >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
            say "$name did not start; the end of its logs ($DIR/log):"
            tail -n 15 "$DIR/log/$name".* >&2 || true
            exit 1
        fi
        sleep 0.2
    done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
munge_works() { munge -n -S "$DIR/munge/munge.socket" | unmunge -S "$DIR/munge/munge.socket"; }
node_ready() { sinfo -h -N -o %T | grep -qE '^(idle|mixed|allocated)'; }

up() {
    if [ "$(id -u)" != 0 ]; then
        say "needs root: its daemons run as root (SlurmUser=root), and apt-get installs its packages"
        exit 3
    fi
    install_packages
    configure
    STARTED=()
    start munged --foreground --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
        --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed"
    wait_for munged 20 munge_works
    if [ ! -d "$DIR/mysql/mysql" ]; then
        mariadb-install-db --no-defaults --datadir="$DIR/mysql" --user=root --auth-root-authentication-method=socket \
            --skip-test-db >"$DIR/log/mariadb-install.log" 2>&1 ||
            { say "mariadb-install-db failed:"; tail -n 15 "$DIR/log/mariadb-install.log" >&2; exit 1; }
    fi
    start mariadbd --no-defaults --datadir="$DIR/mysql" --user=root --port=$((PORT + 3)) --bind-address=127.0.0.1 \
        --socket="$DIR/run/mariadb.sock" --pid-file="$DIR/run/mariadb.pid" --log-error="$DIR/log/mariadbd.log" \
        --init-file="$DIR/etc/mariadb-init.sql" --skip-name-resolve --innodb-buffer-pool-size=32M \
        --performance-schema=OFF
    wait_for mariadbd 60 port_open $((PORT + 3))
    start slurmdbd -D
    wait_for slurmdbd 60 port_open $((PORT + 2))
    start slurmctld -D
    wait_for slurmctld 60 scontrol ping
    start slurmd -D
    wait_for slurmd 60 node_ready
    say "${#STARTED[@]} started (${STARTED[*]:-none}), all five running; state and logs in $DIR"
    echo "SLURM_CONF=$SLURM_CONF"
}

stop() {  # stop NAME: SIGTERM the recorded pid, SIGKILL after 20 s
    local pid
    pid=$(pid_of "$1") || { rm -f "$DIR/pids/$1.pid"; return 0; }
    kill -TERM "$pid"
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    rm -f "$DIR/pids/$1.pid"
    say "stopped $1 ($pid)"
}

down() {
    if pid_of slurmctld >/dev/null; then  # the jobs first: their processes belong to slurmd's job steps
        local jobs
        jobs=$(squeue -h -o %A 2>/dev/null || true)
        if [ -n "$jobs" ]; then
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            for _ in $(seq 100); do
                [ -z "$(squeue -h -t running,completing -o %A 2>/dev/null)" ] && break
                sleep 0.2
            done
        fi
    fi
    local i
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        stop "${DAEMONS[i]}"
    done
}

status() {
    local name pid running=0
    for name in "${DAEMONS[@]}"; do
        if pid=$(pid_of "$name"); then
            echo "$name running (pid $pid)"
            running=$((running + 1))
        else
            echo "$name not running"
        fi
    done
    echo "SLURM_CONF=$SLURM_CONF"
    [ "$running" = "${#DAEMONS[@]}" ]
}

case "${1:-}" in
    up | down)
        mkdir -p "$DIR/log"
        exec 9>"$DIR/.lock"
        flock 9
        "$1"
        ;;
    status) status ;;
    *)
        say "usage: tests/cluster/slurm.sh up|down|status"
        exit 2
        ;;
esac
