#!/usr/bin/env bash
# A single-node SLURM cluster on localhost for the integration test, with accounting
# (slurmdbd + MariaDB, which the executor plugin's sacct needs) and two GPUs backed by
# /dev/null and /dev/zero (SLURM counts and allocates them; nothing uses them).  Usage: cluster.sh start DIR | cluster.sh stop DIR.  Needs root and Debian's
# slurm-wlm, slurmdbd, munge and mariadb-server.
set -euo pipefail
cmd=$1
dir=$(realpath -m "$2")
host=$(hostname -s)

stop() {
    for pid in "$dir"/run/*.pid; do
        [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
    done
    for _ in $(seq 30); do  # wait until they are gone, so that a next start finds the sockets free
        pgrep -f "$dir" >/dev/null || break
        sleep 0.5
    done
}

if [ "$cmd" = stop ]; then
    stop
    # the job steps' srun finds the configuration at the default path: remove our link
    [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$dir/slurm.conf" ] && rm -f /etc/slurm/slurm.conf
    exit 0
fi
if [ -e /etc/slurm/slurm.conf ] && [ "$(readlink /etc/slurm/slurm.conf)" != "$dir/slurm.conf" ]; then
    echo "cluster.sh: /etc/slurm/slurm.conf exists: a SLURM installation is configured here; not touching it" >&2
    exit 3
fi

mkdir -p "$dir"/{log,spool,state,db,run}
export SLURM_CONF="$dir/slurm.conf"
trap 'echo "cluster.sh: failed at line $LINENO" >&2; tail -n 20 "$dir"/log/*.log >&2' ERR

# munge: one key for the machine, a daemon of our own
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge && chown munge:munge /run/munge
runuser -u munge -- munged --pid-file=/run/munge/munged.pid 2>/dev/null || true
cp /run/munge/munged.pid "$dir/run/munged.pid" 2>/dev/null || true

# MariaDB for accounting, on its default socket (as root: the state dir may be private)
mkdir -p /run/mysqld

mariadb-install-db --user=root --datadir="$dir/db" --auth-root-authentication-method=socket >"$dir/log/mariadb-install.log" 2>&1
rm -f /run/mysqld/mysqld.sock
mariadbd --user=root --datadir="$dir/db" --socket=/run/mysqld/mysqld.sock --skip-networking \
    --pid-file=/run/mysqld/ivaetest.pid >"$dir/log/mariadb.log" 2>&1 &
echo $! >"$dir/run/mariadbd.pid"
for _ in $(seq 60); do mariadb-admin ping >/dev/null 2>&1 && break; sleep 0.5; done
mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"

cat >"$dir/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
LogFile=$dir/log/slurmdbd.log
PidFile=$dir/run/slurmdbd.pid
CONF
chmod 600 "$dir/slurmdbd.conf"

cat >"$dir/slurm.conf" <<CONF
ClusterName=ivaetest
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/none
AccountingStoreFlags=job_comment
ReturnToService=2
MpiDefault=none
SchedulerParameters=defer
NodeName=$host CPUs=$(nproc) RealMemory=16000 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
printf "Name=gpu File=/dev/null\nName=gpu File=/dev/zero\n" >"$dir/gres.conf"
mkdir -p /etc/slurm && ln -sfn "$dir/slurm.conf" /etc/slurm/slurm.conf  # for srun inside jobs

slurmdbd
for _ in $(seq 60); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.5; done
sacctmgr -i add cluster ivaetest >/dev/null
sacctmgr -i add account ivae Cluster=ivaetest >/dev/null
sacctmgr -i add user root Account=ivae Cluster=ivaetest >/dev/null
slurmctld -f "$dir/slurm.conf"
slurmd -f "$dir/slurm.conf"
for _ in $(seq 60); do
    sinfo -h -o %t 2>/dev/null | grep -q idle && exit 0
    sleep 0.5
done
echo "the SLURM node did not become idle; see $dir/log" >&2
exit 1
