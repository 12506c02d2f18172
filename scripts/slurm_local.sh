#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for d2lexp's Slurm tests (tests/test_slurm.py):
#
#   scripts/slurm_local.sh start     # munged, slurmctld and slurmd; returns once the node is idle
#   export SLURM_CONF=/tmp/d2lexp-slurm/slurm.conf    # what sbatch, squeue, srun and the tests read
#   scripts/slurm_local.sh status    # exit 0 if the cluster is up
#   scripts/slurm_local.sh stop      # cancels its jobs, stops the three daemons by their PIDs
#
# It installs nothing: it needs Debian's slurmctld, slurmd, slurm-client and munge packages
# (`apt-get install slurm-wlm munge`). It touches nothing of a system-wide Slurm or munge: its key,
# munge socket, config, state, logs and pid files all live in $D2LEXP_SLURM_DIR (default
# /tmp/d2lexp-slurm), the daemons run as the calling user, and the ports can be moved with
# D2LEXP_SLURM_PORT (slurmctld's; slurmd takes the next one).
set -euo pipefail

DIR="${D2LEXP_SLURM_DIR:-/tmp/d2lexp-slurm}"
PORT="${D2LEXP_SLURM_PORT:-6817}"
CONF="$DIR/slurm.conf"
export SLURM_CONF="$CONF"
DAEMONS=(slurmd slurmctld munged)  # in the order they are stopped

say() { echo "slurm_local: $*" >&2; }

pid_of() {  # the live PID this script recorded for daemon $1, if that process is still that daemon
    local file="$DIR/$1.pid" pid
    [[ -s "$file" ]] || return 1
    pid="$(<"$file")"
    # A PID is reused once its process is gone: only the daemon we started is ours to stop.
    [[ -r "/proc/$pid/comm" && "$(<"/proc/$pid/comm")" == "$1" ]] || return 1
    echo "$pid"
}

node_state() { sinfo --noheader --nodes="$NODE" --format=%t 2>/dev/null | tr -d '*' || true; }

status() {
    local daemon
    for daemon in "${DAEMONS[@]}"; do pid_of "$daemon" >/dev/null || return 1; done
    NODE="$(awk -F'[= ]' '/^NodeName=/{print $2; exit}' "$CONF")"
    [[ "$(node_state)" =~ ^(idle|mix|alloc)$ ]]
}

start() {
    local daemon
    for daemon in slurmctld slurmd munged sinfo; do
        command -v "$daemon" >/dev/null || { say "$daemon not found: apt-get install slurm-wlm munge"; exit 1; }
    done
    if status 2>/dev/null; then
        say "already running (SLURM_CONF=$CONF)"
        return 0
    fi
    for daemon in "${DAEMONS[@]}"; do
        if pid_of "$daemon" >/dev/null; then say "$daemon of an earlier start is still running: run '$0 stop' first"; exit 1; fi
    done
    rm -rf "$DIR" && mkdir -p -m 700 "$DIR/state" "$DIR/spool"
    local user
    user="$(id -un)"

    # munge: a key of this cluster's own, and a socket in this folder (no system munged needed).
    head -c 1024 /dev/urandom >"$DIR/munge.key" && chmod 400 "$DIR/munge.key"
    # --force: as root, and with the socket under /tmp, munged would refuse to start.
    munged --force --socket="$DIR/munge.socket" --key-file="$DIR/munge.key" --pid-file="$DIR/munged.pid" \
        --log-file="$DIR/munged.log" --seed-file="$DIR/munged.seed"

    # This node as slurmd sees it: its real CPUs (sockets, cores, threads) and memory.
    local node_line
    node_line="$(slurmd -C | head -n 1)"
    NODE="$(awk -F'[= ]' '{print $2}' <<<"$node_line")"
    cat >"$CONF" <<EOF
# Written by scripts/slurm_local.sh: a one-node cluster for d2lexp's tests.
ClusterName=d2lexp
SlurmctldHost=$NODE
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge.socket
# No cgroups: processes are tracked through /proc, and tasks are not bound to cores.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
$node_line State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    # -c: a cold start, no jobs or state from an earlier cluster.
    slurmctld -c -f "$CONF"
    slurmd -f "$CONF"

    local deadline=$((SECONDS + 60)) state=""
    while ((SECONDS < deadline)); do
        state="$(node_state)"
        if [[ "$state" == idle ]]; then
            say "up: node $NODE idle (SLURM_CONF=$CONF)"
            return 0
        fi
        sleep 0.5
    done
    say "node $NODE is '${state:-unreachable}' after 60 s; logs in $DIR"
    exit 1
}

stop() {
    [[ -f "$CONF" ]] || { say "not started (no $CONF)"; return 0; }
    if pid_of slurmctld >/dev/null; then
        # Its jobs first, so that no job step outlives slurmd.
        local jobs
        jobs="$(squeue --noheader --format=%A 2>/dev/null | sort -u | tr '\n' ' ')"
        if [[ -n "${jobs// /}" ]]; then
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            local deadline=$((SECONDS + 60))
            while ((SECONDS < deadline)) && [[ -n "$(squeue --noheader --format=%A 2>/dev/null)" ]]; do sleep 0.5; done
        fi
    fi
    local daemon pid
    for daemon in "${DAEMONS[@]}"; do
        pid="$(pid_of "$daemon")" || continue
        kill -TERM "$pid"
        for _ in $(seq 100); do [[ -d "/proc/$pid" ]] || break; sleep 0.1; done
        if [[ -d "/proc/$pid" ]]; then say "$daemon ($pid) did not stop in 10 s"; exit 1; fi
    done
    say "stopped (logs kept in $DIR)"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
