#!/usr/bin/env bash
# Stop the services started by test/env/up.sh (only processes named in its pid files).
# Data (images, registry contents, password) stays unless --purge is given.
#   bash test/env/down.sh [--purge]
set -euo pipefail

PURGE=0
for arg in "$@"; do
  case $arg in
    --purge) PURGE=1 ;;
    -h | --help) sed -n '2,4p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--purge]" >&2; exit 2 ;;
  esac
done

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
STATE=${THINKUBE_TEST_ENV:-$REPO_ROOT/.test-env}
log() { printf '[test-env] %s\n' "$*" >&2; }

if [[ ! -d $STATE ]]; then log "nothing to stop: $STATE does not exist"; exit 0; fi
STATE=$(cd "$STATE" && pwd -P)
RUN=$STATE
[[ -s $STATE/run-dir ]] && RUN=$(cat "$STATE/run-dir")

pid_matches() {
  local pid=$1 pat=$2 cmd
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ -n $cmd && $cmd == *"$pat"* ]]
}
# stop NAME PIDFILE PATTERN TIMEOUT
stop() {
  local name=$1 pidf=$2 pat=$3 timeout=$4 pid i
  pid=$(cat "$pidf" 2>/dev/null || true)
  if pid_matches "$pid" "$pat"; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do pid_matches "$pid" "$pat" || break; sleep 0.1; done
    if pid_matches "$pid" "$pat"; then
      log "$name did not stop within ${timeout}s: killing it"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.3
    fi
  fi
  rm -f "$pidf"
}

# Podman: stop containers left behind by tests first (conmon keeps them alive otherwise).
if [[ -f $STATE/podman/containers.conf ]] && command -v podman >/dev/null 2>&1; then
  PODMAN_ENV=(CONTAINERS_CONF="$STATE/podman/containers.conf" CONTAINERS_STORAGE_CONF="$STATE/podman/storage.conf" CONTAINERS_REGISTRIES_CONF="$STATE/podman/registries.conf")
  if [[ -n $(env "${PODMAN_ENV[@]}" timeout 20 podman ps -q 2>/dev/null) ]]; then
    log "stopping podman containers"
    env "${PODMAN_ENV[@]}" timeout 60 podman stop --all --time 2 >/dev/null 2>&1 || true
  fi
fi
stop "podman service" "$STATE/podman.pid" "unix://$RUN/podman.sock" 15
stop "registry anon" "$STATE/registry-anon.pid" "$STATE/registry-anon/config.yml" 10
stop "registry auth" "$STATE/registry-auth.pid" "$STATE/registry-auth/config.yml" 10
# dockerd stops its containers and its containerd on SIGTERM.
stop dockerd "$STATE/docker.pid" "--data-root $STATE/docker" 30
stop "dockerd's containerd" "$RUN/docker-exec/containerd/containerd.pid" "$RUN/docker-exec/containerd" 10
rm -f "$RUN/docker.sock" "$RUN/podman.sock"

if (( PURGE )); then
  # Refuse to delete anything that does not look like our state dir.
  if [[ $STATE == / || $STATE == "$REPO_ROOT" || ! -f $STATE/ports.env ]]; then
    log "refusing to purge $STATE: it does not look like a test-env state dir"
    exit 1
  fi
  # Storage drivers may leave mounts (overlay, podman's private bind mount) under the dirs.
  for dir in "$STATE" "$RUN"; do
    awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
    done
  done
  log "purging $STATE"
  rm -rf "$STATE"
  [[ $RUN != "$STATE" && $RUN == /tmp/thinkube-env-* ]] && rm -rf "$RUN"
fi
log "stopped"
