#!/usr/bin/env bash
# A local one-node Slurm cluster with accounting, for trying aerun's Slurm launcher and for CI.
#
#   scripts/slurm-local.sh up     install what is missing (root), start munge, MariaDB, slurmdbd,
#                                 slurmctld and slurmd; print the partition's name
#   scripts/slurm-local.sh down   stop the daemons that `up` started, and nothing else
#
# `make slurm-up` / `make slurm-down` call it. Idempotent: a cluster that already answers is left as it
# is. Everything it writes lives under $AERUN_SLURM_DIR (default /var/tmp/aerun-slurm), except the two
# files the Slurm commands look for: /etc/slurm/slurm.conf and /etc/slurm/slurmdbd.conf (only written
# when absent or written by this script before), and munge's key (only when absent).
set -euo pipefail

STATE=${AERUN_SLURM_DIR:-/var/tmp/aerun-slurm}
PARTITION=aerun
CLUSTER=aerun
MARK="# written by aerun's scripts/slurm-local.sh"
PACKAGES=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server)

say() { echo "slurm-local: $*"; }
die() { echo "slurm-local: error: $*" >&2; exit 1; }

answers() { timeout 10 sinfo -h -p "$PARTITION" -o '%a' 2>/dev/null | grep -q up; }

wait_for() {  # wait_for SECONDS WHAT COMMAND...
    local limit=$1 what=$2
    shift 2
    for _ in $(seq "$limit"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 1
    done
    die "$what did not come up within ${limit}s; its log is under $STATE/log"
}

started() {  # record a daemon this script started, so that `down` stops it and nothing else
    echo "$1 $2" >>"$STATE/started"
}

install_packages() {
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return
    [ "$(id -u)" -eq 0 ] || die "missing packages: ${missing[*]}; install them as root (apt-get install ${missing[*]}) or run this as root"
    command -v apt-get >/dev/null || die "missing packages: ${missing[*]}, and no apt-get here to install them"
    say "installing ${missing[*]} (about a minute)"
    # no daemon is started by the packages' scripts: this script starts the ones it needs
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d
}

write_conf() {  # write_conf PATH MODE: from stdin, unless PATH exists and is not ours
    local path=$1 mode=$2
    if [ -e "$path" ] && ! grep -qF "$MARK" "$path"; then
        die "$path exists and was not written by this script; a real cluster's config is not replaced"
    fi
    mkdir -p "$(dirname "$path")"
    cat >"$path"
    chmod "$mode" "$path"
}

start_munge() {
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
    if ! munge -n </dev/null >/dev/null 2>&1; then
        mkdir -p /run/munge && chown munge:munge /run/munge
        runuser -u munge -- /usr/sbin/munged --force
        wait_for 15 munged munge -n
        started munged "$(cat /run/munge/munged.pid 2>/dev/null || pgrep -x munged | head -1)"
    fi
}

start_mariadb() {
    if ! mysqladmin ping >/dev/null 2>&1; then
        mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
        [ -d /var/lib/mysql/mysql ] || mysql_install_db --user=mysql >/dev/null 2>&1
        (setsid mysqld_safe --user=mysql >"$STATE/log/mariadb.out" 2>&1 &)
        wait_for 60 MariaDB mysqladmin ping
        started mariadb "$(cat /run/mysqld/mysqld.pid)"
    fi
    mysql -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
              CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'aerun-local';
              GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
}

up() {
    if answers; then
        say "a cluster answers already; partition: $PARTITION"
        return
    fi
    install_packages
    [ "$(id -u)" -eq 0 ] || die "a local cluster needs root (it writes /etc/slurm, starts munge, MariaDB and the Slurm daemons); run it with sudo"
    mkdir -p "$STATE"/{log,state,spool}
    : >"$STATE/started"
    local host cpus mem
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
    write_conf /etc/slurm/slurmdbd.conf 600 <<EOF
$MARK
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=aerun-local
StorageLoc=slurm_acct_db
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/slurmdbd.pid
EOF
    write_conf /etc/slurm/slurm.conf 644 <<EOF
$MARK
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
MinJobAge=60
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    start_munge
    start_mariadb
    if ! pgrep -x slurmdbd >/dev/null; then
        slurmdbd
        wait_for 30 slurmdbd sacctmgr -n list cluster
        started slurmdbd "$(cat "$STATE/slurmdbd.pid")"
    fi
    sacctmgr -i -Q add cluster "$CLUSTER" >/dev/null 2>&1 || true
    pgrep -x slurmctld >/dev/null || { slurmctld; sleep 1; started slurmctld "$(cat "$STATE/slurmctld.pid")"; }
    pgrep -x slurmd >/dev/null || { slurmd; sleep 1; started slurmd "$(cat "$STATE/slurmd.pid")"; }
    wait_for 60 "the node" answers
    scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
    say "cluster up: node $host ($cpus CPUs, $mem MB), partition: $PARTITION"
    echo "$PARTITION"
}

down() {
    if [ ! -s "$STATE/started" ]; then
        say "nothing to stop: no daemon was started by 'up' (state in $STATE)"
        return
    fi
    # the last started first: slurmd, slurmctld, slurmdbd, MariaDB, munge
    tac "$STATE/started" | while read -r name pid; do
        if [ "$name" = mariadb ]; then
            mysqladmin shutdown >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
        elif [ -n "$pid" ] && kill "$pid" 2>/dev/null; then
            :
        fi
        say "stopped $name"
    done
    : >"$STATE/started"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    *) die "usage: $0 up|down" ;;
esac
