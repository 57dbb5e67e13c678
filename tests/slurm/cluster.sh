#!/usr/bin/env bash
# Bring up / tear down a throw-away one-node SLURM cluster on localhost for tests.
#
#   bash tests/slurm/cluster.sh up     <statedir>   # install (if needed) + start
#   bash tests/slurm/cluster.sh down   <statedir>   # stop daemons, remove <statedir>
#   bash tests/slurm/cluster.sh status <statedir>   # exit 0 if the node is usable
#   bash tests/slurm/cluster.sh env    <statedir>   # print the client exports again
#
# `up` prints the client environment on stdout (everything else goes to stderr), so
#   eval "$(bash tests/slurm/cluster.sh up /tmp/slurm-test)"
# or
#   bash tests/slurm/cluster.sh up /tmp/slurm-test && . /tmp/slurm-test/env.sh
# configures sbatch/squeue/scancel/srun/sinfo/scontrol in the calling shell.
#
# Everything lives in <statedir>: slurm.conf, gres.conf, cgroup.conf, a private
# munge key + socket, daemon logs, pid files and slurm state.  The system munged
# and /etc/munge are not used.  Clients find the cluster through
# SLURM_CONF=<statedir>/slurm.conf; in addition /etc/slurm/slurm.conf is made a
# symlink to it (unless it is a real file, or SLURM_TEST_NO_ETC=1), because the
# snakemake slurm jobstep executor strips SLURM_CONF from the environment of the
# srun it runs inside each job.  `down` removes that symlink again.
#
# Cluster: NodeName=localhost (slurmd is started with -N localhost, so the real
# hostname does not matter, but it must resolve: srun needs it), CPUs=2,
# RealMemory=8000, Gres=gpu:2 backed by two dummy files, partitions "debug"
# (the default) and "gpu" (same node, not the default: a job lands there only
# when it asks for it with -p gpu).
# No slurmdbd/accounting, no cgroups (proctrack/linuxproc, task/none).
#
# Tunables (environment variables, all optional):
#   SLURM_TEST_CPUS        CPUs of the node            (default 2)
#   SLURM_TEST_MEM_MB      RealMemory of the node (MB) (default 8000)
#   SLURM_TEST_GPUS        number of fake GPUs         (default 2)
#   SLURM_TEST_CTLD_PORT   slurmctld port              (default 6817)
#   SLURM_TEST_SLURMD_PORT slurmd port                 (default 6818)
#   SLURM_TEST_MIN_JOB_AGE MinJobAge in seconds        (default 300; finished jobs
#                          stay visible in squeue that long, which snakemake's
#                          slurm executor needs with --slurm-status-command squeue)
#   SLURM_TEST_TIMEOUT     seconds to wait for each daemon / the node (default 60)
#   SLURM_TEST_NO_INSTALL  if set to 1, never run apt-get (fail if slurm is missing)
#   SLURM_TEST_NO_ETC      if set to 1, do not create the /etc/slurm/slurm.conf symlink

set -euo pipefail

PROG=$(basename "$0")
MARKER=".slurm-test-cluster"

log() { printf '[%s] %s\n' "$PROG" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$PROG" "$*" >&2; exit 1; }

usage() {
    cat >&2 <<EOF
usage: bash $0 {up|down|status|env} <statedir>
EOF
    exit 2
}

[[ $# -eq 2 ]] || usage
ACTION=$1
STATEDIR_ARG=$2

[[ -n "$STATEDIR_ARG" ]] || usage
case "$STATEDIR_ARG" in
    *[[:space:]]* | *'#'* | *'='* | *','*) die "statedir must not contain whitespace, '#', '=' or ','" ;;
esac
# Absolute path without requiring the directory to exist.
case "$STATEDIR_ARG" in
    /*) S=$STATEDIR_ARG ;;
    *) S=$PWD/$STATEDIR_ARG ;;
esac
S=${S%/}
[[ "$S" != "" && "$S" != "/" ]] || die "refusing to use / as statedir"

CPUS=${SLURM_TEST_CPUS:-2}
MEM_MB=${SLURM_TEST_MEM_MB:-8000}
NGPUS=${SLURM_TEST_GPUS:-2}
CTLD_PORT=${SLURM_TEST_CTLD_PORT:-6817}
SLURMD_PORT=${SLURM_TEST_SLURMD_PORT:-6818}
MIN_JOB_AGE=${SLURM_TEST_MIN_JOB_AGE:-300}
TIMEOUT=${SLURM_TEST_TIMEOUT:-60}
NODE=localhost
PARTITION=debug
EXTRA_PARTITION=gpu

CONF=$S/slurm.conf
MUNGE_DIR=$S/munge
MUNGE_SOCKET=$MUNGE_DIR/munge.socket.2
MUNGE_KEY=$S/munge-key/munge.key
MUNGED_PID=$S/run/munged.pid
SLURMCTLD_PID=$S/run/slurmctld.pid
SLURMD_PID=$S/run/slurmd.pid

# ---------------------------------------------------------------- helpers ----

# pid_of <pidfile> <binary-basename>: print the pid if the process is alive and
# really is that binary (guards against pid reuse), else nothing.
pid_of() {
    local pidfile=$1 name=$2 pid exe
    [[ -s "$pidfile" ]] || return 0
    pid=$(tr -dc '0-9' <"$pidfile")
    [[ -n "$pid" ]] || return 0
    [[ -d /proc/$pid ]] || return 0
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
    exe=$(basename "${exe% (deleted)}")
    # Debian installs e.g. /usr/sbin/slurmctld-wlm behind an alternatives symlink.
    if [[ "$exe" == "$name" || "$exe" == "$name-wlm" ]]; then
        echo "$pid"
    fi
}

show_log() {
    local f=$1
    if [[ -f "$f" ]]; then
        echo "----- last 40 lines of $f -----" >&2
        tail -n 40 "$f" >&2 || true
        echo "-----" >&2
    else
        echo "(no log file $f)" >&2
    fi
}

fail_daemon() {
    local what=$1 logf=$2
    shift 2
    printf '[%s] ERROR: %s\n' "$PROG" "$what" >&2
    show_log "$logf"
    for extra in "$@"; do show_log "$extra"; done
    exit 1
}

client_env() {
    cat <<EOF
export SLURM_CONF=$CONF
EOF
}

need_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (daemons run as root, apt-get may be needed)"
}

have_all_binaries() {
    local b
    for b in munged munge unmunge slurmctld slurmd slurmstepd sbatch srun squeue sinfo scontrol scancel; do
        command -v "$b" >/dev/null 2>&1 || [[ -x /usr/sbin/$b ]] || return 1
    done
}

install_packages() {
    export PATH=$PATH:/usr/sbin:/sbin
    if have_all_binaries; then
        return 0
    fi
    [[ "${SLURM_TEST_NO_INSTALL:-0}" != 1 ]] || die "slurm/munge not installed and SLURM_TEST_NO_INSTALL=1"
    command -v apt-get >/dev/null || die "slurm/munge not installed and apt-get not available"
    log "installing slurm-wlm and munge with apt-get (this takes a minute)"
    local aptlog
    aptlog=$(mktemp /tmp/slurm-test-apt.XXXXXX.log)
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get update >"$aptlog" 2>&1; then
        tail -n 30 "$aptlog" >&2
        die "apt-get update failed (full log: $aptlog)"
    fi
    if ! apt-get install -y --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        slurm-wlm munge >>"$aptlog" 2>&1; then
        tail -n 30 "$aptlog" >&2
        die "apt-get install slurm-wlm munge failed (full log: $aptlog)"
    fi
    rm -f "$aptlog"
    have_all_binaries || die "packages installed but some slurm/munge binaries are still missing"
}

port_in_use() {
    local port=$1 hex
    hex=$(printf '%04X' "$port")
    # /proc/net/tcp{,6}: local_address is column 2 ("IP:PORT" in hex), st 0A = LISTEN
    awk -v p=":$hex" 'NR>1 && $4=="0A" && substr($2, length($2)-4)==p {found=1} END {exit !found}' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

CONFIG_CHANGED=0

# put_file <path>: write stdin to <path> only if the content differs.
put_file() {
    local dst=$1 tmp
    tmp=$(mktemp "$dst.XXXXXX")
    cat >"$tmp"
    chmod 0644 "$tmp"
    if [[ -f "$dst" ]] && cmp -s "$tmp" "$dst"; then
        rm -f "$tmp"
    else
        [[ -f "$dst" ]] && CONFIG_CHANGED=1
        mv -f "$tmp" "$dst"
    fi
}

write_configs() {
    local i files
    mkdir -p "$S" "$S/run" "$S/log" "$S/ctld" "$S/spool" "$S/tmp" "$MUNGE_DIR" "$S/munge-key"
    chmod 0755 "$S" "$S/run" "$S/log" "$S/ctld" "$S/spool"
    chmod 1777 "$S/tmp"
    # socket dir must be searchable by everyone (jobs of any user talk to munged),
    # the key dir must not be.
    chmod 0755 "$MUNGE_DIR"
    chmod 0700 "$S/munge-key"
    touch "$S/$MARKER"

    # Fake GPU "device files": gres.conf File= must name existing character
    # devices (plain files work too but slurmd then logs an error and does not
    # set CUDA_VISIBLE_DEVICES), so use symlinks to /dev/null.
    for ((i = 0; i < NGPUS; i++)); do
        ln -sfn /dev/null "$S/fakegpu$i"
    done
    if ((NGPUS > 1)); then
        files="$S/fakegpu[0-$((NGPUS - 1))]"
    else
        files="$S/fakegpu0"
    fi

    put_file "$CONF" <<EOF
# Generated by tests/slurm/cluster.sh -- one-node test cluster, do not edit.
ClusterName=testcluster
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
# cred_expire also sets how long a requeued job waits before it may start again
# (default 120 s); keep it short so requeue tests are fast.
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=10

StateSaveLocation=$S/ctld
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$SLURMCTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
TmpFS=$S/tmp

# No accounting daemon, no cgroups.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobContainerType=job_container/none
SwitchType=switch/none
MpiDefault=none
MailProg=/bin/true

# Scheduling: per-core/memory consumable resources so two 1-CPU jobs run side by side.
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=2,sched_min_interval=100000
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
PriorityType=priority/basic
GresTypes=gpu

# Timers: short so tests are fast; MinJobAge keeps finished jobs visible in squeue.
MinJobAge=$MIN_JOB_AGE
ReturnToService=2
JobRequeue=1
SlurmctldTimeout=60
SlurmdTimeout=120
InactiveLimit=0
KillWait=5
Waittime=0
MessageTimeout=10
SlurmdParameters=config_overrides

NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:$NGPUS State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
PartitionName=$EXTRA_PARTITION Nodes=$NODE Default=NO MaxTime=INFINITE State=UP OverSubscribe=NO
EOF

    put_file "$S/gres.conf" <<EOF
# Generated by tests/slurm/cluster.sh
AutoDetect=off
NodeName=$NODE Name=gpu File=$files
EOF

    # Not used by any configured plugin (no cgroup plugins), but keep slurmd from
    # trying to mount anything should it read the file.
    put_file "$S/cgroup.conf" <<EOF
# Generated by tests/slurm/cluster.sh -- cgroups are not used by this cluster.
CgroupAutomount=no
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainDevices=no
EOF

    client_env | put_file "$S/env.sh"
}

ETC_CONF=/etc/slurm/slurm.conf

# srun/sbatch must also find the config WITHOUT $SLURM_CONF: the snakemake slurm
# jobstep executor strips every SLURM_* variable (SLURM_CONF included) from the
# environment of the `srun` it runs inside each job, so that srun falls back to
# the compiled-in default /etc/slurm/slurm.conf.  Point that at our config with a
# symlink -- but never overwrite a real (non-symlink) config.
link_etc_conf() {
    [[ "${SLURM_TEST_NO_ETC:-0}" != 1 ]] || return 0
    if [[ -L "$ETC_CONF" ]]; then
        local cur
        cur=$(readlink "$ETC_CONF")
        if [[ "$cur" != "$CONF" && -e "$cur" ]]; then
            log "WARNING: $ETC_CONF points to $cur (another running test cluster?); repointing it to $CONF"
        fi
    elif [[ -e "$ETC_CONF" ]]; then
        log "WARNING: $ETC_CONF is a real file; not touching it. Clients that drop \$SLURM_CONF" \
            "(e.g. srun inside snakemake slurm jobs) will talk to that cluster instead."
        return 0
    fi
    mkdir -p "$(dirname "$ETC_CONF")"
    ln -sfn "$CONF" "$ETC_CONF"
}

unlink_etc_conf() {
    if [[ -L "$ETC_CONF" && "$(readlink "$ETC_CONF")" == "$CONF" ]]; then
        rm -f "$ETC_CONF"
    fi
}

start_munged() {
    local pid
    pid=$(pid_of "$MUNGED_PID" munged)
    if [[ -n "$pid" ]]; then
        log "munged already running (pid $pid)"
    else
        if [[ ! -s "$MUNGE_KEY" ]]; then
            log "creating munge key $MUNGE_KEY"
            if command -v mungekey >/dev/null 2>&1 || [[ -x /usr/sbin/mungekey ]]; then
                mungekey --create --keyfile="$MUNGE_KEY" --force >/dev/null
            else
                dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
            fi
        fi
        chown root:root "$MUNGE_KEY"
        chmod 0400 "$MUNGE_KEY"
        rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock" "$MUNGED_PID"
        log "starting munged"
        # -f: root-owned dirs under /tmp etc. are fine for a test cluster.
        munged --force \
            --socket="$MUNGE_SOCKET" \
            --key-file="$MUNGE_KEY" \
            --pid-file="$MUNGED_PID" \
            --log-file="$S/log/munged.log" \
            --seed-file="$MUNGE_DIR/munged.seed" \
            >>"$S/log/munged.log" 2>&1 ||
            fail_daemon "munged failed to start" "$S/log/munged.log"
    fi
    local t=0
    until munge -n -S "$MUNGE_SOCKET" 2>/dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1; do
        ((t++ < TIMEOUT * 5)) || fail_daemon "munged is not answering on $MUNGE_SOCKET" "$S/log/munged.log"
        sleep 0.2
    done
}

start_slurmctld() {
    local pid
    pid=$(pid_of "$SLURMCTLD_PID" slurmctld)
    if [[ -n "$pid" ]]; then
        log "slurmctld already running (pid $pid)"
    else
        if port_in_use "$CTLD_PORT"; then
            die "port $CTLD_PORT (slurmctld) is already in use -- another slurmctld running? (set SLURM_TEST_CTLD_PORT)"
        fi
        log "starting slurmctld"
        # Fresh controller state every time it is (re)started.
        rm -rf "${S:?}/ctld"
        mkdir -p "$S/ctld"
        slurmctld -f "$CONF" -i >>"$S/log/slurmctld.stderr" 2>&1 ||
            fail_daemon "slurmctld failed to start" "$S/log/slurmctld.log" "$S/log/slurmctld.stderr"
    fi
    local t=0
    until scontrol ping 2>/dev/null | grep -q 'is UP'; do
        # the pid file appears right after daemonizing; if the process is gone
        # after a couple of seconds, it died (bad config, port in use, ...)
        if ((t >= 10 && t % 5 == 0)) && [[ -z "$(pid_of "$SLURMCTLD_PID" slurmctld)" ]]; then
            fail_daemon "slurmctld died during startup" "$S/log/slurmctld.log" "$S/log/slurmctld.stderr"
        fi
        ((t++ < TIMEOUT * 5)) || fail_daemon "slurmctld did not answer 'scontrol ping' within ${TIMEOUT}s" \
            "$S/log/slurmctld.log" "$S/log/slurmctld.stderr"
        sleep 0.2
    done
}

node_state() {
    sinfo -h -n "$NODE" -o '%t' 2>/dev/null | head -n1
}

start_slurmd() {
    local pid
    pid=$(pid_of "$SLURMD_PID" slurmd)
    if [[ -n "$pid" ]]; then
        log "slurmd already running (pid $pid)"
    else
        if port_in_use "$SLURMD_PORT"; then
            die "port $SLURMD_PORT (slurmd) is already in use -- another slurmd running? (set SLURM_TEST_SLURMD_PORT)"
        fi
        log "starting slurmd"
        rm -rf "${S:?}/spool"
        mkdir -p "$S/spool"
        slurmd -f "$CONF" -N "$NODE" >>"$S/log/slurmd.stderr" 2>&1 ||
            fail_daemon "slurmd failed to start" "$S/log/slurmd.log" "$S/log/slurmd.stderr"
    fi
    local t=0 st=""
    while :; do
        st=$(node_state)
        case "$st" in
            idle | mix | mixed | alloc | allocated | comp | completing) break ;;
        esac
        if ((t >= 10 && t % 5 == 0)) && [[ -z "$(pid_of "$SLURMD_PID" slurmd)" ]]; then
            fail_daemon "slurmd died during startup (node state '${st}')" \
                    "$S/log/slurmd.log" "$S/log/slurmd.stderr" "$S/log/slurmctld.log"
        fi
        if ((t++ >= TIMEOUT * 5)); then
            scontrol show node "$NODE" >&2 || true
            fail_daemon "node $NODE did not become idle within ${TIMEOUT}s (state '${st}')" \
                "$S/log/slurmd.log" "$S/log/slurmd.stderr" "$S/log/slurmctld.log"
        fi
        sleep 0.2
    done
    log "node $NODE is $st"
}

# ----------------------------------------------------------------- actions ---

do_up() {
    need_root
    local t0=$SECONDS
    install_packages
    export PATH=$PATH:/usr/sbin:/sbin
    export SLURM_CONF=$CONF
    if [[ -e "$S" && ! -e "$S/$MARKER" && -n "$(ls -A "$S" 2>/dev/null)" ]]; then
        die "$S exists, is not empty and was not created by $PROG; refusing to use it"
    fi
    write_configs
    link_etc_conf
    if ((CONFIG_CHANGED)) && [[ -n "$(pid_of "$SLURMCTLD_PID" slurmctld)$(pid_of "$SLURMD_PID" slurmd)" ]]; then
        log "configuration changed while the cluster is running; restarting slurmd and slurmctld"
        stop_pid slurmd "$SLURMD_PID"
        stop_pid slurmctld "$SLURMCTLD_PID"
    fi
    start_munged
    start_slurmctld
    start_slurmd
    log "cluster up in $((SECONDS - t0))s; client environment written to $S/env.sh"
    client_env
}

stop_pid() {
    local name=$1 pidfile=$2 pid i
    pid=$(pid_of "$pidfile" "$name")
    if [[ -z "$pid" ]]; then
        rm -f "$pidfile"
        return 0
    fi
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        [[ -d /proc/$pid ]] || break
        sleep 0.1
    done
    if [[ -d /proc/$pid ]]; then
        log "$name (pid $pid) did not exit, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    rm -f "$pidfile"
}

# slurmstepd processes of this cluster (they keep a socket in our spool dir and
# survive slurmd); identified by pid, never by name alone.
leftover_stepds() {
    local d pid exe fd target
    [[ -d "$S/spool" ]] || return 0
    for d in /proc/[0-9]*; do
        pid=${d#/proc/}
        exe=$(readlink "$d/exe" 2>/dev/null || true)
        exe=$(basename "${exe% (deleted)}")
        [[ "$exe" == slurmstepd || "$exe" == slurmstepd-wlm ]] || continue
        # open files of a stepd include our SlurmdLogFile and spool dir
        for fd in "$d"/fd/*; do
            target=$(readlink "$fd" 2>/dev/null || true)
            if [[ "$target" == "$S/"* ]]; then
                echo "$pid"
                break
            fi
        done
    done
}

# descendants <pid>: all (recursive) child pids of <pid>.
descendants() {
    local parent=$1 d pid ppid children=""
    for d in /proc/[0-9]*; do
        pid=${d#/proc/}
        # field 4 of /proc/PID/stat is the ppid; strip "pid (comm) " first
        ppid=$(sed -E 's/^[0-9]+ \(.*\) [A-Za-z] ([0-9]+) .*/\1/' "$d/stat" 2>/dev/null || true)
        if [[ "$ppid" == "$parent" ]]; then
            children="$children $pid"
        fi
    done
    for pid in $children; do
        echo "$pid"
        descendants "$pid"
    done
}

do_down() {
    need_root
    export PATH=$PATH:/usr/sbin:/sbin
    export SLURM_CONF=$CONF
    if [[ ! -e "$S" ]]; then
        log "$S does not exist; nothing to do"
        return 0
    fi
    [[ -e "$S/$MARKER" ]] || die "$S was not created by $PROG (no $MARKER); refusing to touch it"

    # Cancel remaining jobs while the controller is still up.
    if [[ -n "$(pid_of "$SLURMCTLD_PID" slurmctld)" ]] && command -v squeue >/dev/null; then
        local jobs i
        jobs=$(squeue -h -o '%A' -t PD,R,CG,S,CF,RQ,RS,RF,SI,SO,ST 2>/dev/null | tr '\n' ' ' || true)
        if [[ -n "${jobs// /}" ]]; then
            log "cancelling jobs: $jobs"
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            for ((i = 0; i < 50; i++)); do
                [[ -z "$(squeue -h -o '%A' -t PD,R,CG 2>/dev/null || true)" ]] && break
                sleep 0.2
            done
        fi
    fi

    # slurmd and slurmctld take ~2 s each to exit: stop them in parallel.
    stop_pid slurmd "$SLURMD_PID" &
    stop_pid slurmctld "$SLURMCTLD_PID" &
    wait
    stop_pid munged "$MUNGED_PID"

    local p pids
    for p in $(leftover_stepds); do
        pids=$(descendants "$p" | tr '\n' ' ')
        pids="$p ${pids% }"
        log "killing leftover slurmstepd (pid $p) and its job processes: $pids"
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
    done

    unlink_etc_conf
    rm -rf "${S:?}"
    local port
    for port in "$CTLD_PORT" "$SLURMD_PORT"; do
        if port_in_use "$port"; then
            log "WARNING: port $port is still in use after shutdown (a daemon not started by $PROG?)"
        fi
    done
    log "cluster down, $S removed"
}

do_status() {
    export PATH=$PATH:/usr/sbin:/sbin
    export SLURM_CONF=$CONF
    local ok=0 name pidf pid
    for name in munged slurmctld slurmd; do
        case $name in
            munged) pidf=$MUNGED_PID ;;
            slurmctld) pidf=$SLURMCTLD_PID ;;
            slurmd) pidf=$SLURMD_PID ;;
        esac
        pid=$(pid_of "$pidf" "$name")
        if [[ -n "$pid" ]]; then
            log "$name running (pid $pid)"
        else
            log "$name NOT running"
            ok=1
        fi
    done
    if ((ok == 0)); then
        sinfo >&2 || ok=1
        case "$(node_state)" in
            idle | mix | mixed | alloc | allocated | comp | completing) ;;
            *) ok=1 ;;
        esac
    fi
    return $ok
}

case "$ACTION" in
    up) do_up ;;
    down) do_down ;;
    status) do_status ;;
    env) client_env ;;
    *) usage ;;
esac
