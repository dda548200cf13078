#!/usr/bin/env bash
# A real single-node SLURM on 127.0.0.1, from Debian's packages (slurm-wlm, munge), kept in one
# folder: configuration, keys, sockets, state, spool and logs. Nothing goes to /etc or /var.
# The tests start one with it (tests/cluster/conftest.py); you can too, to try
# `nucscale run ... --cluster slurm` on a laptop before the real cluster.
#
#   bash scripts/slurm-local.sh install          # apt-get install slurm-wlm munge (needs root)
#   bash scripts/slurm-local.sh start DIR        # munged + slurmctld + slurmd; prints the env
#   export SLURM_CONF=DIR/slurm.conf             # then sbatch, squeue, sinfo use it
#   bash scripts/slurm-local.sh stop DIR
#
# The daemons run as the calling user (root in CI and in the development containers: SlurmUser
# and SlurmdUser are that user). The node has this machine's cores and memory; jobs are tracked
# by process (proctrack/linuxproc) with no cgroups, which containers rarely allow. Ports: the
# first free pair from 6817 up (another instance may be running).
set -euo pipefail

die() { echo "slurm-local: $*" >&2; exit 1; }

install() {
    if [ -x /usr/sbin/slurmctld ] && [ -x /usr/sbin/munged ] && command -v sbatch >/dev/null; then
        return 0
    fi
    command -v apt-get >/dev/null || die "apt-get not found: install slurm-wlm and munge with your package manager"
    export DEBIAN_FRONTEND=noninteractive
    # package lists may be missing or stale on a fresh machine: refresh them once if needed
    apt-get install -y -q slurm-wlm munge >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null && apt-get install -y -q slurm-wlm munge >/dev/null; } ||
        die "apt-get could not install slurm-wlm and munge (root needed)"
}

free_port() {
    python3 - "$1" <<'PY'
import socket, sys
port = int(sys.argv[1])
while True:
    with socket.socket() as a, socket.socket() as b:
        try:
            a.bind(("127.0.0.1", port)); b.bind(("127.0.0.1", port + 1))
        except OSError:
            port += 2
            continue
    print(port)
    break
PY
}

start() {
    local dir=$1
    for cmd in munged slurmctld slurmd sbatch; do
        command -v "$cmd" >/dev/null || [ -x "/usr/sbin/$cmd" ] ||
            die "$cmd not found: run 'bash scripts/slurm-local.sh install' (Debian: slurm-wlm, munge)"
    done
    mkdir -p "$dir"/{state,spool,munge}
    dir=$(cd "$dir" && pwd)
    chmod 700 "$dir/munge"
    local user host cpus mem port
    user=$(id -un)
    host=$(hostname -s)
    cpus=$(getconf _NPROCESSORS_ONLN)  # not nproc: it obeys OMP_NUM_THREADS, which a caller may have set to 1
    mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    port=$(free_port 6817)

    [ -f "$dir/munge/munge.key" ] || {
        head -c 1024 /dev/urandom >"$dir/munge/munge.key"
        chmod 400 "$dir/munge/munge.key"
    }
    /usr/sbin/munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.sock" \
        --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
        --seed-file="$dir/munge/munged.seed"

    cat >"$dir/slurm.conf" <<EOF
# written by scripts/slurm-local.sh: a single-node SLURM on 127.0.0.1
ClusterName=nucscale-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.sock
CredType=cred/munge
SlurmUser=$user
SlurmdUser=$user
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
    export SLURM_CONF=$dir/slurm.conf
    /usr/sbin/slurmctld -i -f "$SLURM_CONF"
    /usr/sbin/slurmd -f "$SLURM_CONF" -N "$host"
    local i
    for i in $(seq 1 60); do
        if sinfo -h -o %T 2>/dev/null | grep -qx idle; then
            echo "export SLURM_CONF=$SLURM_CONF"
            return 0
        fi
        sleep 0.5
    done
    die "the node did not come up within 30 s; see $dir/slurmctld.log and $dir/slurmd.log"
}

stop() {
    local dir=$1 f i
    # jobs first: with proctrack/linuxproc their processes would outlive slurmd
    if [ -f "$dir/slurm.conf" ]; then
        SLURM_CONF=$dir/slurm.conf scancel --user="$(id -un)" 2>/dev/null || true
        for i in $(seq 1 20); do
            [ -z "$(SLURM_CONF=$dir/slurm.conf squeue -h 2>/dev/null)" ] && break
            sleep 0.5
        done
    fi
    for f in slurmd.pid slurmctld.pid munge/munged.pid; do
        [ -f "$dir/$f" ] && kill "$(cat "$dir/$f")" 2>/dev/null || true
    done
}

case "${1:-}" in
    install) install ;;
    start) [ $# -eq 2 ] || die "usage: $0 start DIR"; start "$2" ;;
    stop) [ $# -eq 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
    *) die "usage: $0 install | start DIR | stop DIR" ;;
esac
