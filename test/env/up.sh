#!/usr/bin/env bash
# Start (idempotently) the real services the tests and the demo use:
#   - dockerd (Docker Engine, API 1.41) on a private unix socket
#   - podman's Docker-compatible API service on a private unix socket
#   - two distribution registries on loopback: anonymous, and htpasswd-protected
#   - an offline busybox base image in both registries (+ arm64 variant when emulation works)
# and write STATE/env.json + STATE/env.sh describing them.
#
# State dir: ${THINKUBE_TEST_ENV:-<repo>/.test-env}. Run as root (installs missing Debian packages).
# Second invocation reuses everything and takes about a second. Stop with test/env/down.sh.
set -euo pipefail

T0=$(date +%s%N)
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
STATE=${THINKUBE_TEST_ENV:-$REPO_ROOT/.test-env}
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd -P)
chmod 700 "$STATE"

BUSYBOX_TAG=1.35
REGISTRY_USER=tester

log()  { printf '[test-env] %s\n' "$*" >&2; }
warn() { printf '[test-env] WARNING: %s\n' "$*" >&2; }
# LOG_MARK[file]: byte offset where the current step / daemon start began in that log.
declare -A LOG_MARK=()
mark_log() { LOG_MARK[$1]=$(stat -c %s "$1" 2>/dev/null || echo 0); }
tail_log() {
  local f
  for f in "$@"; do
    [[ -s $f ]] || continue
    printf -- '----- last lines of %s -----\n' "$f" >&2
    tail -c +$((${LOG_MARK[$f]:-0} + 1)) "$f" | tail -n 40 >&2 || true
    printf -- '----- end of %s -----\n' "$f" >&2
  done
}
# die MESSAGE [LOGFILE...]
die() { local msg=$1; shift; printf '[test-env] ERROR: %s\n' "$msg" >&2; tail_log "$@"; exit 1; }
trap 'rc=$?; printf "[test-env] ERROR: command failed (exit %s) at %s line %s: %s\n" "$rc" "${BASH_SOURCE[0]}" "$LINENO" "$BASH_COMMAND" >&2' ERR

IS_ROOT=0; [[ $(id -u) == 0 ]] && IS_ROOT=1

# Never talk to a proxy (or anything else) for our loopback services.
CURL=(curl -sS --noproxy '*' --max-time 5)
unset DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH DOCKER_API_VERSION 2>/dev/null || true
export DEBIAN_FRONTEND=noninteractive

# ---------------------------------------------------------------- run dir (unix sockets)
# The longest socket we create is RUN/docker-exec/containerd/containerd.sock.ttrpc: keep it < 100
# chars. With a long state path the sockets and runtime state go to a short dir under /tmp.
RUN=$STATE
if (( ${#STATE} + 45 >= 100 )); then
  RUN=/tmp/thinkube-env-$(printf '%s' "$STATE" | sha256sum | cut -c1-12)
fi
mkdir -p "$RUN"; chmod 700 "$RUN"
printf '%s\n' "$RUN" >"$STATE/run-dir"

# One up.sh at a time per state dir (tests may call it concurrently).
exec 9>"$STATE/.up.lock"
if ! flock -w 600 9; then die "another test/env/up.sh holds $STATE/.up.lock for more than 10 minutes"; fi

SETUP_LOG=$STATE/setup.log
# step DESCRIPTION: start a new section of setup.log (failures show only the current section).
step() {
  mark_log "$SETUP_LOG"
  printf '===== %s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$SETUP_LOG"
}
: >>"$SETUP_LOG"

# ---------------------------------------------------------------- packages
APT_UPDATED=0
apt_update() {
  step "apt-get update"
  if apt-get update -qq >>"$SETUP_LOG" 2>&1 || { sleep 3; apt-get update -qq >>"$SETUP_LOG" 2>&1; }; then
    APT_UPDATED=1
  else
    die "apt-get update failed" "$SETUP_LOG"
  fi
}
apt_install() {
  # Keep package maintainer scripts from starting system services (a system dockerd with a
  # bridge, a registry on 0.0.0.0:5000): policy-rc.d answering 101 forbids it.
  local policy=/usr/sbin/policy-rc.d own_policy=0 rc=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; own_policy=1
  fi
  (( APT_UPDATED )) || apt_update
  step "apt-get install $*"
  local args=(-y -qq --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  apt-get install "${args[@]}" "$@" >>"$SETUP_LOG" 2>&1 ||
    { sleep 3; apt-get install "${args[@]}" "$@" >>"$SETUP_LOG" 2>&1; } || rc=$?
  (( own_policy )) && rm -f "$policy"
  (( rc == 0 )) || die "apt-get install $* failed" "$SETUP_LOG"
}

MISSING=()
need_bin() { command -v "$1" >/dev/null 2>&1 || MISSING+=("$2"); }
need_bin dockerd docker.io
need_bin docker docker.io
need_bin docker-registry docker-registry
need_bin htpasswd apache2-utils
need_bin podman podman
need_bin ansible-playbook ansible-core
need_bin qemu-aarch64-static qemu-user-static
need_bin update-binfmts binfmt-support
need_bin curl curl
need_bin flock util-linux
need_bin setsid util-linux
if command -v dpkg-query >/dev/null 2>&1; then
  [[ $(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null || true) == "install ok installed" ]] || MISSING+=(busybox-static)
else
  [[ -x /bin/busybox ]] || MISSING+=(busybox-static)
fi
if (( ${#MISSING[@]} )); then
  mapfile -t MISSING < <(printf '%s\n' "${MISSING[@]}" | sort -u)
  if (( IS_ROOT )) && command -v apt-get >/dev/null 2>&1; then
    log "installing missing packages: ${MISSING[*]}"
    apt_install "${MISSING[@]}"
  else
    die "missing packages: ${MISSING[*]}
  install them as root:  apt-get update && apt-get install -y --no-install-recommends ${MISSING[*]}"
  fi
fi

if [[ ! -e /proc/sys/fs/binfmt_misc/status ]]; then
  if (( IS_ROOT )) && mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>>"$SETUP_LOG"; then
    log "mounted binfmt_misc"
  else
    warn "binfmt_misc is not mounted and could not be mounted: arm64 emulation will not work"
  fi
fi

# ---------------------------------------------------------------- process helpers
# pid_matches PID PATTERN: PID is alive (not a zombie) and its command line contains PATTERN.
pid_matches() {
  local pid=$1 pat=$2 cmd
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ -n $cmd && $cmd == *"$pat"* ]]
}
pidfile_matches() { [[ -f $1 ]] && pid_matches "$(cat "$1" 2>/dev/null)" "$2"; }
# stop_pid PIDFILE PATTERN [TIMEOUT]: stop our process named in PIDFILE (never anything else).
stop_pid() {
  local pidf=$1 pat=$2 timeout=${3:-15} pid i
  pid=$(cat "$pidf" 2>/dev/null || true)
  if pid_matches "$pid" "$pat"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do pid_matches "$pid" "$pat" || break; sleep 0.1; done
    if pid_matches "$pid" "$pat"; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
  fi
  rm -f "$pidf"
}
# daemonize LOGFILE CMD...: start CMD detached (own session, no inherited fds, no proxy env);
# sets DAEMON_PID.
daemonize() {
  local logf=$1; shift
  mark_log "$logf"
  printf '===== %s starting: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$logf"
  (
    for fd in /proc/$BASHPID/fd/*; do
      fd=${fd##*/}
      if [[ $fd =~ ^[0-9]+$ ]] && (( fd > 2 )); then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    cd /
    exec env -u http_proxy -u https_proxy -u HTTP_PROXY -u HTTPS_PROXY -u all_proxy -u ALL_PROXY \
      setsid "$@" </dev/null >>"$logf" 2>&1
  ) &
  DAEMON_PID=$!
}
sock_ping() { [[ -S $1 ]] && [[ $("${CURL[@]}" --max-time 2 --unix-socket "$1" http://localhost/_ping 2>/dev/null) == OK ]]; }
http_code() { "${CURL[@]}" --max-time 2 -o /dev/null -w '%{http_code}' "$@" 2>/dev/null || true; }
# wait_for SECONDS PID CHECK-CMD...: poll CHECK until it succeeds; fail early when PID dies.
wait_for() {
  local secs=$1 pid=$2 i; shift 2
  for ((i = 0; i < secs * 10; i++)); do
    "$@" && return 0
    [[ -d /proc/$pid ]] && [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] || { "$@" && return 0; return 2; }
    sleep 0.1
  done
  return 1
}
# write_if_changed FILE (content on stdin): returns 0 when the file changed.
write_if_changed() {
  local f=$1 tmp
  tmp=$(mktemp "$f.XXXXXX")
  cat >"$tmp"
  if [[ -f $f ]] && cmp -s "$tmp" "$f"; then rm -f "$tmp"; return 1; fi
  mv -f "$tmp" "$f"; return 0
}

# ---------------------------------------------------------------- ports & secrets
port_in_use() {
  local hex; hex=$(printf ':%04X' "$1")
  awk -v p="$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { f = 1 } END { exit !f }' \
    /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
pick_port() {
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 12000))   # below the kernel's ephemeral range (32768+)
    [[ $p == "${ANON_PORT:-}" || $p == "${AUTH_PORT:-}" ]] && continue
    port_in_use "$p" || { echo "$p"; return 0; }
  done
  die "could not find a free loopback port"
}
ANON_PORT='' AUTH_PORT=''
# shellcheck disable=SC1091
[[ -f $STATE/ports.env ]] && . "$STATE/ports.env"
choose_port() { # VAR NAME: keep the stored port unless another process took it
  local var=$1 name=$2 cur=${!1} p
  if [[ -n $cur ]] && { pidfile_matches "$STATE/registry-$name.pid" "$STATE/registry-$name/config.yml" || ! port_in_use "$cur"; }; then
    return 0
  fi
  [[ -n $cur ]] && warn "port $cur (registry $name) is taken by another process; picking a new one"
  p=$(pick_port) || exit 1
  printf -v "$var" '%s' "$p"
}
choose_port ANON_PORT anon
choose_port AUTH_PORT auth
printf 'ANON_PORT=%s\nAUTH_PORT=%s\n' "$ANON_PORT" "$AUTH_PORT" | write_if_changed "$STATE/ports.env" || true
REGISTRY_ANON=localhost:$ANON_PORT
REGISTRY_AUTH=localhost:$AUTH_PORT

umask 077
if [[ ! -s $STATE/registry-password ]]; then
  head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24 >"$STATE/registry-password"
fi
chmod 600 "$STATE/registry-password"
REGISTRY_PASSWORD=$(cat "$STATE/registry-password")
if [[ ! -s $STATE/htpasswd ]]; then
  htpasswd -niB "$REGISTRY_USER" <<<"$REGISTRY_PASSWORD" | sed '/^$/d' >"$STATE/htpasswd.tmp"
  mv -f "$STATE/htpasswd.tmp" "$STATE/htpasswd"
fi
[[ -s $STATE/registry-http-secret ]] || head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$STATE/registry-http-secret"
umask 022

# ---------------------------------------------------------------- docker CLI
DOCKER_SOCK=$RUN/docker.sock
PODMAN_SOCK=$RUN/podman.sock
DOCKER_HOST_URL=unix://$DOCKER_SOCK
PODMAN_HOST_URL=unix://$PODMAN_SOCK
DOCKER_CONFIG_DIR=$STATE/docker-config
mkdir -p "$DOCKER_CONFIG_DIR"; chmod 700 "$DOCKER_CONFIG_DIR"
DOCKER_CLI=''
# dk ARGS...: docker CLI against our dockerd, our config dir, classic builder.
dk() { DOCKER_HOST=$DOCKER_HOST_URL DOCKER_BUILDKIT=0 "$DOCKER_CLI" --config "$DOCKER_CONFIG_DIR" "$@"; }
dkp() { DOCKER_HOST=$PODMAN_HOST_URL DOCKER_BUILDKIT=0 "$DOCKER_CLI" --config "$DOCKER_CONFIG_DIR" "$@"; }
pick_docker_cli() {
  local c out candidates=() errors=''
  c=$(command -v docker 2>/dev/null || true); [[ -n $c ]] && candidates+=("$c")
  [[ -x /usr/bin/docker && $c != /usr/bin/docker ]] && candidates+=(/usr/bin/docker)
  for c in "${candidates[@]}"; do
    if out=$(DOCKER_HOST=$DOCKER_HOST_URL timeout 20 "$c" --config "$DOCKER_CONFIG_DIR" version --format '{{.Server.APIVersion}}' 2>&1); then
      DOCKER_CLI=$c; return 0
    fi
    errors+="$c: $out"$'\n'
  done
  die "no docker CLI works against $DOCKER_HOST_URL (tried: ${candidates[*]:-none}):
$errors"
}

# ---------------------------------------------------------------- dockerd
DOCKER_LOG=$STATE/dockerd.log
start_dockerd() {
  if sock_ping "$DOCKER_SOCK"; then log "dockerd: reusing $DOCKER_HOST_URL"; return 0; fi
  local ctd=$RUN/docker-exec/containerd
  # Stop what an earlier run left behind (only processes that are provably ours).
  stop_pid "$STATE/docker.pid" "--data-root $STATE/docker" 20
  stop_pid "$ctd/containerd.pid" "$ctd" 10
  rm -f "$DOCKER_SOCK" "$STATE/docker.pid" "$ctd/containerd.pid" "$ctd"/containerd.sock* "$ctd"/containerd-debug.sock
  mkdir -p "$STATE/docker" "$RUN/docker-exec"
  [[ -f $STATE/daemon.json ]] || echo '{}' >"$STATE/daemon.json"
  log "dockerd: starting ($DOCKER_HOST_URL, log $DOCKER_LOG)"
  daemonize "$DOCKER_LOG" dockerd \
    --config-file "$STATE/daemon.json" \
    --data-root "$STATE/docker" --exec-root "$RUN/docker-exec" --pidfile "$STATE/docker.pid" \
    --host "$DOCKER_HOST_URL" \
    --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false
  local rc=0; wait_for 30 "$DAEMON_PID" sock_ping "$DOCKER_SOCK" || rc=$?
  case $rc in
    0) ;;
    2) die "dockerd exited during start-up" "$DOCKER_LOG" ;;
    *) die "dockerd did not answer /_ping on $DOCKER_SOCK within 30 s" "$DOCKER_LOG" ;;
  esac
}

# ---------------------------------------------------------------- podman
PODMAN_DIR=$STATE/podman
PODMAN_RUN=$RUN/podman
PODMAN_LOG=$STATE/podman.log
PODMAN_CONF=$PODMAN_DIR/containers.conf
PODMAN_STORAGE_CONF=$PODMAN_DIR/storage.conf
PODMAN_REGISTRIES_CONF=$PODMAN_DIR/registries.conf
PODMAN_ENV=(CONTAINERS_CONF="$PODMAN_CONF" CONTAINERS_STORAGE_CONF="$PODMAN_STORAGE_CONF" CONTAINERS_REGISTRIES_CONF="$PODMAN_REGISTRIES_CONF")
write_podman_config() {
  mkdir -p "$PODMAN_DIR/storage" "$PODMAN_DIR/networks" "$PODMAN_DIR/helpers" "$PODMAN_RUN/storage" "$PODMAN_RUN/tmp"
  local driver=${THINKUBE_PODMAN_STORAGE_DRIVER:-}
  if [[ -z $driver ]]; then
    # overlay cannot sit on overlay (state dir inside a container): use vfs there.
    case $(stat -f -c %T "$PODMAN_DIR/storage" 2>/dev/null) in overlayfs | overlay) driver=vfs ;; *) driver=overlay ;; esac
  fi
  # Root without CAP_SYS_RESOURCE (as in many containers) cannot raise rlimits above its hard
  # limit, but podman gives containers nofile=nproc=1048576 by default ("error setting rlimit
  # type 7: operation not permitted"). Podman 4.3 also lowers its own nproc to 32768 at start-up
  # (setrlimit NPROC 32768), so a container may not ask for more than min(hard, 32768).
  local ulimits=() h
  h=$(ulimit -Hn); [[ $h =~ ^[0-9]+$ ]] && { (( h > 1048576 )) && h=1048576; ulimits+=("\"nofile=$h:$h\""); }
  h=$(ulimit -Hu); [[ $h =~ ^[0-9]+$ ]] || h=32768; (( h > 32768 )) && h=32768
  ulimits+=("\"nproc=$h:$h\"")
  local ulimit_line
  ulimit_line="default_ulimits = [$(IFS=,; echo "${ulimits[*]}")]"
  # No container networking at all: podman's compat API maps Docker's "default" network mode to
  # a netavark bridge (iptables rules, NAT to the outside). Our helper dir holds a netavark that
  # refuses, so a container asking for a bridge fails loudly, like dockerd --bridge=none.
  write_if_changed "$PODMAN_DIR/helpers/netavark" <<'EOF' || true
#!/bin/sh
echo "netavark $*" >>"${0%/*}/netavark.calls"
case "$1" in
  --version|version) echo '{"version":"0.0.0-disabled"}'; exit 0 ;;
esac
echo '{"error":"container networking is disabled in the thinkube test environment: use network mode none"}'
exit 1
EOF
  chmod 755 "$PODMAN_DIR/helpers/netavark"
  local changed=1
  # netns=none: `podman run` containers get no network. (Builds through the Docker-compatible
  # API are another matter: podman 4.3 runs their RUN steps in the HOST network namespace unless
  # the request carries networkmode=NetworkDisabled; nothing in containers.conf changes that.)
  # lock_type=file: locks live in tmp_dir instead of the host-wide /dev/shm/libpod_lock.
  write_if_changed "$PODMAN_CONF" <<EOF && changed=0
# generated by test/env/up.sh
[containers]
netns = "none"
log_driver = "k8s-file"
$ulimit_line

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$PODMAN_RUN/events.log"
tmp_dir = "$PODMAN_RUN/tmp"
lock_type = "file"
runtime = "runc"
helper_binaries_dir = ["$PODMAN_DIR/helpers"]

[network]
network_backend = "netavark"
network_config_dir = "$PODMAN_DIR/networks"
EOF
  write_if_changed "$PODMAN_STORAGE_CONF" <<EOF && changed=0
# generated by test/env/up.sh
[storage]
driver = "$driver"
graphroot = "$PODMAN_DIR/storage"
runroot = "$PODMAN_RUN/storage"
EOF
  write_if_changed "$PODMAN_REGISTRIES_CONF" <<EOF && changed=0
# generated by test/env/up.sh: only our loopback registries, plain HTTP, no short-name search.
unqualified-search-registries = []
short-name-mode = "permissive"

[[registry]]
location = "$REGISTRY_ANON"
insecure = true

[[registry]]
location = "127.0.0.1:$ANON_PORT"
insecure = true

[[registry]]
location = "$REGISTRY_AUTH"
insecure = true

[[registry]]
location = "127.0.0.1:$AUTH_PORT"
insecure = true
EOF
  return $changed
}
PODMAN_STARTED=0
start_podman() {
  local config_changed=$1
  if (( ! config_changed )) && sock_ping "$PODMAN_SOCK"; then log "podman: reusing $PODMAN_HOST_URL"; return 0; fi
  (( config_changed )) && pidfile_matches "$STATE/podman.pid" "system service" && log "podman: configuration changed, restarting"
  stop_pid "$STATE/podman.pid" "unix://$PODMAN_SOCK" 15
  rm -f "$PODMAN_SOCK"
  log "podman: starting ($PODMAN_HOST_URL, log $PODMAN_LOG)"
  daemonize "$PODMAN_LOG" env "${PODMAN_ENV[@]}" podman system service --time=0 "unix://$PODMAN_SOCK"
  echo "$DAEMON_PID" >"$STATE/podman.pid"
  local rc=0; wait_for 30 "$DAEMON_PID" sock_ping "$PODMAN_SOCK" || rc=$?
  case $rc in
    0) PODMAN_STARTED=1 ;;
    2) die "podman system service exited during start-up" "$PODMAN_LOG" ;;
    *) die "podman system service did not answer /_ping on $PODMAN_SOCK within 30 s" "$PODMAN_LOG" ;;
  esac
}

# ---------------------------------------------------------------- registries
registry_config() { # NAME PORT [htpasswd]
  local name=$1 port=$2 auth=${3:-}
  mkdir -p "$STATE/registry-$name/data"
  {
    cat <<EOF
# generated by test/env/up.sh
version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $STATE/registry-$name/data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$port
  secret: $(cat "$STATE/registry-http-secret")
  headers:
    X-Content-Type-Options: [nosniff]
EOF
    if [[ -n $auth ]]; then
      cat <<EOF
auth:
  htpasswd:
    realm: thinkube-test-registry
    path: $STATE/htpasswd
EOF
    fi
  } | write_if_changed "$STATE/registry-$name/config.yml"
}
start_registry() { # NAME PORT EXPECTED-CODE CONFIG-CHANGED
  local name=$1 port=$2 want=$3 changed=$4
  local pidf=$STATE/registry-$name.pid logf=$STATE/registry-$name.log conf=$STATE/registry-$name/config.yml
  local up_check=(eval '[[ $(http_code "http://127.0.0.1:'"$port"'/v2/") == '"$want"' ]]')
  if (( ! changed )) && pidfile_matches "$pidf" "$conf" && "${up_check[@]}"; then
    log "registry $name: reusing localhost:$port"; return 0
  fi
  stop_pid "$pidf" "$conf" 10
  port_in_use "$port" && die "registry $name: port 127.0.0.1:$port is in use by another process (remove $STATE/ports.env to pick new ports)"
  log "registry $name: starting localhost:$port (log $logf)"
  daemonize "$logf" docker-registry serve "$conf"
  echo "$DAEMON_PID" >"$pidf"
  local rc=0; wait_for 15 "$DAEMON_PID" "${up_check[@]}" || rc=$?
  case $rc in
    0) ;;
    2) die "registry $name exited during start-up" "$logf" ;;
    *) die "registry $name did not answer GET /v2/ with $want on 127.0.0.1:$port within 15 s" "$logf" ;;
  esac
}
MANIFEST_ACCEPT='application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'
# has_tag REGISTRY(host:port) REPO TAG [auth]
has_tag() {
  local reg=$1 repo=$2 tag=$3 auth=${4:-} code
  local url="http://127.0.0.1:${reg##*:}/v2/$repo/manifests/$tag"
  if [[ -n $auth ]]; then
    code=$(printf 'user = "%s:%s"\n' "$REGISTRY_USER" "$REGISTRY_PASSWORD" |
      "${CURL[@]}" -K - -o /dev/null -w '%{http_code}' -I -H "Accept: $MANIFEST_ACCEPT" "$url" 2>/dev/null || true)
  else
    code=$("${CURL[@]}" -o /dev/null -w '%{http_code}' -I -H "Accept: $MANIFEST_ACCEPT" "$url" 2>/dev/null || true)
  fi
  [[ $code == 200 ]]
}

# ---------------------------------------------------------------- go
registry_config anon "$ANON_PORT" && ANON_CHANGED=1 || ANON_CHANGED=0
registry_config auth "$AUTH_PORT" htpasswd && AUTH_CHANGED=1 || AUTH_CHANGED=0
write_podman_config && PODMAN_CHANGED=1 || PODMAN_CHANGED=0

start_dockerd
pick_docker_cli
start_registry anon "$ANON_PORT" 200 "$ANON_CHANGED"
start_registry auth "$AUTH_PORT" 401 "$AUTH_CHANGED"
start_podman "$PODMAN_CHANGED"

# Credentials for the auth registry in our docker config dir (like ~/.docker/config.json).
if ! grep -q "\"$REGISTRY_AUTH\"" "$DOCKER_CONFIG_DIR/config.json" 2>/dev/null; then
  step "docker login $REGISTRY_AUTH"
  dk login -u "$REGISTRY_USER" --password-stdin "$REGISTRY_AUTH" <<<"$REGISTRY_PASSWORD" >>"$SETUP_LOG" 2>&1 ||
    die "docker login to $REGISTRY_AUTH failed" "$SETUP_LOG" "$STATE/registry-auth.log"
  chmod 600 "$DOCKER_CONFIG_DIR/config.json"
fi

# ---------------------------------------------------------------- busybox base image (amd64/host)
BUSYBOX_REPO=library/busybox
build_busybox() { # CTX BUSYBOX-BINARY PLATFORM TAGS...
  local ctx=$1 bin=$2 platform=$3; shift 3
  rm -rf "$ctx"; mkdir -p "$ctx"
  cp "$bin" "$ctx/busybox"; chmod 755 "$ctx/busybox"
  cat >"$ctx/Dockerfile" <<'EOF'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox","--install","-s","/bin"]
RUN mkdir -p /tmp /etc /root /usr/bin /usr/sbin /sbin /var && chmod 1777 /tmp && ln -s /bin/env /usr/bin/env && echo 'root:x:0:0:root:/root:/bin/sh' >/etc/passwd && echo 'root:x:0:' >/etc/group
CMD ["sh"]
EOF
  local targs=() t
  for t in "$@"; do targs+=(-t "$t"); done
  local pargs=(); [[ -n $platform ]] && pargs=(--platform "$platform")
  log "building $1${platform:+ ($platform)} on dockerd"
  step "docker build ${platform:+--platform $platform }$ctx"
  dk build -q --network none "${pargs[@]}" "${targs[@]}" "$ctx" >>"$SETUP_LOG" 2>&1 ||
    { tail_log "$SETUP_LOG"; return 1; }
}
push() { # IMAGE
  step "docker push $1"
  dk push "$1" >>"$SETUP_LOG" 2>&1 || { tail_log "$SETUP_LOG"; return 1; }
}

NEED_ANON=0 NEED_AUTH=0
for t in "$BUSYBOX_TAG" latest; do
  has_tag "$REGISTRY_ANON" "$BUSYBOX_REPO" "$t" || NEED_ANON=1
  has_tag "$REGISTRY_AUTH" "$BUSYBOX_REPO" "$t" auth || NEED_AUTH=1
done
if (( NEED_ANON || NEED_AUTH )); then
  ALL_TAGS=()
  for r in "$REGISTRY_ANON" "$REGISTRY_AUTH"; do for t in "$BUSYBOX_TAG" latest; do ALL_TAGS+=("$r/$BUSYBOX_REPO:$t"); done; done
  if ! dk image inspect "$REGISTRY_ANON/$BUSYBOX_REPO:$BUSYBOX_TAG" >/dev/null 2>&1; then
    build_busybox "$STATE/build/busybox" /bin/busybox "" "${ALL_TAGS[@]}" ||
      die "building the busybox base image on dockerd failed" "$DOCKER_LOG"
  else
    for t in "${ALL_TAGS[@]}"; do dk tag "$REGISTRY_ANON/$BUSYBOX_REPO:$BUSYBOX_TAG" "$t"; done
  fi
  if (( NEED_ANON )); then
    log "pushing busybox to $REGISTRY_ANON"
    for t in "$BUSYBOX_TAG" latest; do push "$REGISTRY_ANON/$BUSYBOX_REPO:$t" || die "push to $REGISTRY_ANON failed" "$STATE/registry-anon.log"; done
  fi
  if (( NEED_AUTH )); then
    log "pushing busybox to $REGISTRY_AUTH"
    for t in "$BUSYBOX_TAG" latest; do push "$REGISTRY_AUTH/$BUSYBOX_REPO:$t" || die "push to $REGISTRY_AUTH failed" "$STATE/registry-auth.log"; done
  fi
fi

# ---------------------------------------------------------------- podman check (after a fresh start)
if (( PODMAN_STARTED )) || [[ ! -f $PODMAN_RUN/verified ]]; then
  ctx=$STATE/build/podman-check
  rm -rf "$ctx"; mkdir -p "$ctx"
  echo ok >"$ctx/hello"
  printf 'FROM scratch\nCOPY hello /hello\n' >"$ctx/Dockerfile"
  step "podman check: FROM scratch build"
  dkp build -q -t localhost/thinkube-env-check:scratch "$ctx" >>"$SETUP_LOG" 2>&1 ||
    die "podman could not build a FROM-scratch image through its Docker API ($PODMAN_HOST_URL)" "$SETUP_LOG" "$PODMAN_LOG"
  # RUN steps + pulling from our insecure loopback registry through podman.
  printf 'FROM %s/%s:%s\nRUN echo ok >/ok\n' "$REGISTRY_ANON" "$BUSYBOX_REPO" "$BUSYBOX_TAG" >"$ctx/Dockerfile"
  step "podman check: RUN build"
  dkp build -q -t localhost/thinkube-env-check:run "$ctx" >>"$SETUP_LOG" 2>&1 ||
    die "podman could not build FROM $REGISTRY_ANON/$BUSYBOX_REPO:$BUSYBOX_TAG with a RUN step" "$SETUP_LOG" "$PODMAN_LOG"
  dkp rmi -f localhost/thinkube-env-check:scratch localhost/thinkube-env-check:run >>"$SETUP_LOG" 2>&1 || true
  touch "$PODMAN_RUN/verified"
  log "podman: builds (FROM scratch, RUN, pull from $REGISTRY_ANON) work"
fi

# ---------------------------------------------------------------- arm64 (optional)
ARM64_DIR=$STATE/arm64
ARM64_BUSYBOX=$ARM64_DIR/root/bin/busybox
arm64_binfmt() {
  local f=/proc/sys/fs/binfmt_misc/qemu-aarch64
  [[ $(uname -m) == aarch64 ]] && return 0
  [[ -f $f ]] && head -n1 "$f" | grep -qx enabled && return 0
  (( IS_ROOT )) || { warn "qemu-aarch64 is not registered in binfmt_misc (needs root: update-binfmts --enable qemu-aarch64)"; return 1; }
  [[ -e /proc/sys/fs/binfmt_misc/status ]] || { warn "binfmt_misc is not mounted"; return 1; }
  step "update-binfmts --enable qemu-aarch64"
  update-binfmts --enable qemu-aarch64 >>"$SETUP_LOG" 2>&1 || update-binfmts --import qemu-aarch64 >>"$SETUP_LOG" 2>&1 || true
  [[ -f $f ]] && head -n1 "$f" | grep -qx enabled || { warn "could not register qemu-aarch64 in binfmt_misc"; tail_log "$SETUP_LOG"; return 1; }
}
arm64_busybox() {
  [[ -x $ARM64_BUSYBOX ]] && return 0
  (( IS_ROOT )) || { warn "the arm64 busybox needs root (dpkg --add-architecture arm64, apt-get download)"; return 1; }
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    log "arm64: dpkg --add-architecture arm64"
    dpkg --add-architecture arm64 || return 1
    APT_UPDATED=0
  fi
  local cand
  cand=$(apt-cache policy busybox-static:arm64 2>/dev/null | awk '/Candidate:/ { print $2 }')
  if [[ -z $cand || $cand == "(none)" ]] && (( ! APT_UPDATED )); then
    log "arm64: apt-get update"
    step "apt-get update (arm64)"
    apt-get update -qq >>"$SETUP_LOG" 2>&1 || { sleep 3; apt-get update -qq >>"$SETUP_LOG" 2>&1; } ||
      { warn "apt-get update failed"; tail_log "$SETUP_LOG"; return 1; }
    APT_UPDATED=1
  fi
  rm -rf "$ARM64_DIR"; mkdir -p "$ARM64_DIR/root"
  step "apt-get download busybox-static:arm64"
  (cd "$ARM64_DIR" && apt-get download -o APT::Sandbox::User=root busybox-static:arm64 >>"$SETUP_LOG" 2>&1) ||
    { warn "apt-get download busybox-static:arm64 failed"; tail_log "$SETUP_LOG"; return 1; }
  dpkg-deb -x "$ARM64_DIR"/busybox-static_*_arm64.deb "$ARM64_DIR/root" ||
    { warn "dpkg-deb -x of the arm64 busybox failed"; return 1; }
  [[ -x $ARM64_BUSYBOX ]] || { warn "no bin/busybox in the arm64 package"; return 1; }
}
arm64_setup() {
  arm64_binfmt || return 1
  arm64_busybox || return 1
  step "run the arm64 busybox under emulation"
  [[ $("$ARM64_BUSYBOX" echo arm64-ok 2>>"$SETUP_LOG") == arm64-ok ]] ||
    { warn "the arm64 busybox does not run under qemu-user emulation"; tail_log "$SETUP_LOG"; return 1; }
  local img=$REGISTRY_ANON/library/busybox-arm64:$BUSYBOX_TAG
  has_tag "$REGISTRY_ANON" library/busybox-arm64 "$BUSYBOX_TAG" && return 0
  build_busybox "$STATE/build/busybox-arm64" "$ARM64_BUSYBOX" linux/arm64 "$img" ||
    { warn "building the arm64 busybox image failed"; return 1; }
  log "pushing $img"
  push "$img" || { warn "push of $img failed"; tail_log "$STATE/registry-anon.log"; return 1; }
}
ARM64=false
if arm64_setup; then
  ARM64=true
else
  warn "*** arm64 emulation is NOT available: arm64 tests will be skipped (\"arm64\": false in env.json) ***"
fi

# ---------------------------------------------------------------- env.json / env.sh
json_str() { local s=$1; s=${s//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"; }
umask 077
{
  printf '{\n'
  printf '  "stateDir": %s,\n' "$(json_str "$STATE")"
  printf '  "runDir": %s,\n' "$(json_str "$RUN")"
  printf '  "dockerHost": %s,\n' "$(json_str "$DOCKER_HOST_URL")"
  printf '  "dockerCli": %s,\n' "$(json_str "$DOCKER_CLI")"
  printf '  "dockerConfigDir": %s,\n' "$(json_str "$DOCKER_CONFIG_DIR")"
  printf '  "dockerLog": %s,\n' "$(json_str "$DOCKER_LOG")"
  printf '  "podmanHost": %s,\n' "$(json_str "$PODMAN_HOST_URL")"
  printf '  "podmanEnv": {\n'
  printf '    "CONTAINERS_CONF": %s,\n' "$(json_str "$PODMAN_CONF")"
  printf '    "CONTAINERS_STORAGE_CONF": %s,\n' "$(json_str "$PODMAN_STORAGE_CONF")"
  printf '    "CONTAINERS_REGISTRIES_CONF": %s\n' "$(json_str "$PODMAN_REGISTRIES_CONF")"
  printf '  },\n'
  printf '  "podmanLog": %s,\n' "$(json_str "$PODMAN_LOG")"
  printf '  "registryAnon": %s,\n' "$(json_str "$REGISTRY_ANON")"
  printf '  "registryAuth": %s,\n' "$(json_str "$REGISTRY_AUTH")"
  printf '  "registryUser": %s,\n' "$(json_str "$REGISTRY_USER")"
  printf '  "registryPassword": %s,\n' "$(json_str "$REGISTRY_PASSWORD")"
  printf '  "registryAnonLog": %s,\n' "$(json_str "$STATE/registry-anon.log")"
  printf '  "registryAuthLog": %s,\n' "$(json_str "$STATE/registry-auth.log")"
  printf '  "busyboxTag": %s,\n' "$(json_str "$BUSYBOX_TAG")"
  printf '  "busyboxImage": %s,\n' "$(json_str "$REGISTRY_ANON/$BUSYBOX_REPO:$BUSYBOX_TAG")"
  printf '  "busyboxArm64Image": %s,\n' "$( [[ $ARM64 == true ]] && json_str "$REGISTRY_ANON/library/busybox-arm64:$BUSYBOX_TAG" || echo null)"
  printf '  "arm64": %s\n' "$ARM64"
  printf '}\n'
} >"$STATE/env.json.tmp"
mv -f "$STATE/env.json.tmp" "$STATE/env.json"
{
  echo "# generated by test/env/up.sh; source it: . $STATE/env.sh"
  printf 'export THINKUBE_TEST_ENV=%q\n' "$STATE"
  printf 'export THINKUBE_TEST_DOCKER_HOST=%q\n' "$DOCKER_HOST_URL"
  printf 'export THINKUBE_TEST_DOCKER_CONFIG=%q\n' "$DOCKER_CONFIG_DIR"
  printf 'export THINKUBE_TEST_PODMAN_HOST=%q\n' "$PODMAN_HOST_URL"
  printf 'export THINKUBE_TEST_PODMAN_ENV=%q\n' "${PODMAN_ENV[*]}"
  printf 'export THINKUBE_TEST_REGISTRY_ANON=%q\n' "$REGISTRY_ANON"
  printf 'export THINKUBE_TEST_REGISTRY_AUTH=%q\n' "$REGISTRY_AUTH"
  printf 'export THINKUBE_TEST_REGISTRY_USER=%q\n' "$REGISTRY_USER"
  printf 'export THINKUBE_TEST_REGISTRY_PASSWORD=%q\n' "$REGISTRY_PASSWORD"
  printf 'export THINKUBE_TEST_REGISTRY_ANON_LOG=%q\n' "$STATE/registry-anon.log"
  printf 'export THINKUBE_TEST_REGISTRY_AUTH_LOG=%q\n' "$STATE/registry-auth.log"
  printf 'export THINKUBE_TEST_BUSYBOX_TAG=%q\n' "$BUSYBOX_TAG"
  printf 'export THINKUBE_TEST_ARM64=%q\n' "$ARM64"
} >"$STATE/env.sh.tmp"
mv -f "$STATE/env.sh.tmp" "$STATE/env.sh"
umask 022

ELAPSED=$(( ($(date +%s%N) - T0) / 1000000 ))
{
  echo "[test-env] ready in $((ELAPSED / 1000)).$(printf '%03d' $((ELAPSED % 1000)))s  (state: $STATE)"
  echo "[test-env]   dockerd        $DOCKER_HOST_URL"
  echo "[test-env]   podman         $PODMAN_HOST_URL"
  echo "[test-env]   registry anon  $REGISTRY_ANON"
  echo "[test-env]   registry auth  $REGISTRY_AUTH (user $REGISTRY_USER, password in $STATE/registry-password)"
  echo "[test-env]   base image     $REGISTRY_ANON/$BUSYBOX_REPO:$BUSYBOX_TAG (also :latest, also on $REGISTRY_AUTH)"
  echo "[test-env]   arm64          $ARM64"
  echo "[test-env]   env            $STATE/env.json, $STATE/env.sh"
} >&2
