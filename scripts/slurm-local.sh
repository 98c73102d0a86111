#!/usr/bin/env bash
# A real one-node Slurm cluster on loopback for orchestrate's Slurm tests (tests/it/slurm.rs):
# munged + slurmctld + slurmd, no systemd, no accounting (sacct is absent, as on many clusters).
#
#   scripts/slurm-local.sh start   # idempotent; prints `export SLURM_CONF=...` on stdout
#   scripts/slurm-local.sh stop    # cancels jobs, stops the daemons by their recorded pids
#
# Everything lives in $ORCHESTRATE_SLURM_ROOT (default ${TMPDIR:-/tmp}/orchestrate-slurm).
# Installs Debian's slurmctld, slurmd, slurm-client and munge with apt when missing (on a
# machine without package lists, set ORCHESTRATE_SLURM_APT_UPDATE=1 or run apt-get update).
# Facts this follows (Slurm 22.05, measured): ../shared/notes/slurm.md. Slots: max(nproc, 4)
# (more than the cores: config_overrides), so throttle and parallel tests mean something on 2
# cores. Ports 6817/6818 on 127.0.0.1: one such cluster per machine.
set -euo pipefail

ROOT=${ORCHESTRATE_SLURM_ROOT:-${TMPDIR:-/tmp}/orchestrate-slurm}
CONF=$ROOT/etc/slurm.conf
MUNGE_SOCK=$ROOT/run/munge.socket
export SLURM_CONF=$CONF

say() { echo "[slurm-local] $*" >&2; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
fail() {
  say "$1"
  [ -n "${2:-}" ] && [ -f "$2" ] && tail -n 20 "$2" >&2
  exit 1
}
stop_pid() {
  local f=$1 pid
  alive "$f" || { rm -f "$f"; return 0; }
  pid=$(cat "$f")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$f"
}

stop() {
  if alive "$ROOT/run/slurmctld.pid"; then
    scancel --user="$(id -un)" 2>/dev/null || true
    sleep 0.5
  fi
  stop_pid "$ROOT/run/slurmd.pid"
  stop_pid "$ROOT/run/slurmctld.pid"
  stop_pid "$ROOT/run/munged.pid"
  say "stopped"
}

install_packages() {
  local missing=()
  for p in slurmctld slurmd slurm-client munge; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || fail "Slurm is not installed and apt-get is missing: install ${missing[*]}"
  local sudo_cmd=""
  [ "$(id -u)" != 0 ] && sudo_cmd="sudo"
  if [ "${ORCHESTRATE_SLURM_APT_UPDATE:-0}" = 1 ] || ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then
    $sudo_cmd apt-get update -q -o DPkg::Lock::Timeout=600 >/dev/null
  fi
  say "apt-get install ${missing[*]}"
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 \
    --no-install-recommends "${missing[@]}" >/dev/null
}

write_config() {
  local cpus mem
  cpus=$(nproc); [ "$cpus" -lt 4 ] && cpus=4
  mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
  cat > "$CONF.new" <<EOF
# One-node Slurm for orchestrate's tests (scripts/slurm-local.sh)
ClusterName=orchestrate-test
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=6817
SlurmdPort=6818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCK
StateSaveLocation=$ROOT/state
SlurmdSpoolDir=$ROOT/spool
SlurmctldPidFile=$ROOT/run/slurmctld.self.pid
SlurmdPidFile=$ROOT/run/slurmd.self.pid
SlurmctldLogFile=$ROOT/log/slurmctld.log
SlurmdLogFile=$ROOT/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# start submitted jobs at once (the default batch_sched_delay waits up to 3 s)
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
# finished jobs leave squeue after a minute: the coordinator must not depend on them
MinJobAge=60
KillWait=5
InactiveLimit=0
NodeName=localhost NodeAddr=127.0.0.1 NodeHostname=localhost CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  if cmp -s "$CONF.new" "$CONF"; then
    rm -f "$CONF.new"
  else
    mv "$CONF.new" "$CONF"
    # a running cluster picks up a changed config only on restart
    stop_pid "$ROOT/run/slurmd.pid"
    stop_pid "$ROOT/run/slurmctld.pid"
  fi
}

start() {
  install_packages
  mkdir -p "$ROOT"/{etc,state,spool,log,run,munge}
  chmod 700 "$ROOT/munge"
  if [ ! -s "$ROOT/munge/munge.key" ]; then
    dd if=/dev/urandom of="$ROOT/munge/munge.key" bs=1024 count=1 2>/dev/null
    chmod 600 "$ROOT/munge/munge.key"
  fi
  write_config
  if ! alive "$ROOT/run/munged.pid"; then
    munged --force --socket="$MUNGE_SOCK" --key-file="$ROOT/munge/munge.key" \
      --pid-file="$ROOT/run/munged.pid" --log-file="$ROOT/log/munged.log" \
      --seed-file="$ROOT/munge/seed" --num-threads=4
  fi
  for _ in $(seq 50); do [ -S "$MUNGE_SOCK" ] && break; sleep 0.1; done
  munge -n --socket="$MUNGE_SOCK" | unmunge --socket="$MUNGE_SOCK" >/dev/null \
    || fail "munge does not work" "$ROOT/log/munged.log"
  if ! alive "$ROOT/run/slurmctld.pid"; then
    nohup slurmctld -D -i -f "$CONF" > "$ROOT/log/slurmctld.out" 2>&1 &
    echo $! > "$ROOT/run/slurmctld.pid"
  fi
  for _ in $(seq 300); do
    scontrol ping 2>/dev/null | grep -q UP && break
    alive "$ROOT/run/slurmctld.pid" || break
    sleep 0.1
  done
  scontrol ping 2>/dev/null | grep -q UP || fail "slurmctld did not come up" "$ROOT/log/slurmctld.out"
  if ! alive "$ROOT/run/slurmd.pid"; then
    nohup slurmd -D -N localhost -f "$CONF" > "$ROOT/log/slurmd.out" 2>&1 &
    echo $! > "$ROOT/run/slurmd.pid"
  fi
  local state=
  for _ in $(seq 300); do
    state=$(sinfo -h -N -n localhost -o %T 2>/dev/null || true)
    case "$state" in idle | mixed | allocated | completing) break ;; esac
    case "$state" in drain* | down*) scontrol update NodeName=localhost State=RESUME 2>/dev/null || true ;; esac
    alive "$ROOT/run/slurmd.pid" || break
    sleep 0.1
  done
  case "$state" in
    idle | mixed | allocated | completing) ;;
    *) fail "node state '$state'" "$ROOT/log/slurmd.out" ;;
  esac
  say "up: $(sinfo -h -o '%P %a nodes=%D %T cpus(A/I/O/T)=%C')"
  echo "export SLURM_CONF=$CONF"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
