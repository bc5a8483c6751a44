#!/usr/bin/env bash
# docker-setup.sh - make a working Docker engine and a local Python base image
# available. Idempotent: safe to run on a fresh machine and again on one where
# it already ran (each step checks before acting).
#
# Environment:
#   MT_BASE_IMAGE      image name to build           (default mt-base:bookworm)
#   MT_CACHE_DIR       rootfs tarball cache          (default ${XDG_CACHE_HOME:-$HOME/.cache}/mt-core)
#   MT_DEBIAN_MIRROR   Debian mirror for debootstrap (default: taken from apt sources)
#   MT_DOCKERD_FLAGS   exact extra dockerd flags; disables the automatic fallbacks
#   MT_DOCKER_BENCH=1  also print start-latency measurements at the end
#
# Requires root (or passwordless sudo) only for installing packages, starting
# dockerd and running debootstrap.
set -Eeuo pipefail

MT_BASE_IMAGE=${MT_BASE_IMAGE:-mt-base:bookworm}
MT_CACHE_DIR=${MT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mt-core}
TMPD=${TMPDIR:-/tmp}
DOCKERD_LOG=${MT_DOCKERD_LOG:-$TMPD/dockerd.log}
WAIT_SECS=60
SUITE=bookworm
INCLUDE=python3,python3-venv,python3-pip
# The per-container hardening flags we rely on (verified at the end).
HARDEN_GROUPS=("--network none" "--read-only" "--tmpfs /tmp:rw,size=64m" "--cap-drop ALL"
  "--security-opt no-new-privileges" "--pids-limit 64" "--memory 256m" "--cpus 1"
  "--user 65534:65534")
read -r -a HARDEN_FLAGS <<<"${HARDEN_GROUPS[*]}"

log() { echo "docker-setup: $*"; }
die() { echo "docker-setup: ERROR: $*" >&2; exit 1; }
trap 'die "command failed (line $LINENO): $BASH_COMMAND"' ERR
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}'; }

SUDO=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO=(sudo -n)
  else SUDO=(__need_root__); fi
fi
as_root() {
  [ "${SUDO[0]:-}" = __need_root__ ] && die "need root (or passwordless sudo) to run: $*"
  "${SUDO[@]}" "$@"
}

engine_ok() { command -v docker >/dev/null 2>&1 && timeout 15 docker info >/dev/null 2>&1; }

APT_UPDATED=0
APT_LOG="$TMPD/mt-docker-setup-apt.log"
apt_install() {  # apt_install PKG...  (apt-get update at most once per run)
  if [ "$APT_UPDATED" = 0 ]; then
    log "apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$APT_LOG" 2>&1 ||
      apt_fail "apt-get update"
    APT_UPDATED=1
  fi
  log "apt-get install -y $*"
  as_root env DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 \
    apt-get install -y -q "$@" >>"$APT_LOG" 2>&1 || apt_fail "apt-get install $*"
}
apt_fail() {
  tail -n 15 "$APT_LOG" | sed 's/^/docker-setup:   | /' >&2
  die "$1 failed (full log: $APT_LOG)"
}

ensure_tools() {  # install docker.io / debootstrap only if missing
  local pkgs=()
  command -v dockerd >/dev/null 2>&1 || pkgs+=(docker.io)
  command -v debootstrap >/dev/null 2>&1 || pkgs+=(debootstrap)
  [ ${#pkgs[@]} -eq 0 ] || apt_install "${pkgs[@]}"
  command -v dockerd >/dev/null 2>&1 || die "dockerd still missing after install"
  command -v docker >/dev/null 2>&1 || die "docker CLI missing after install"
}

# ---------------------------------------------------------------------------
# 1. Docker engine
# ---------------------------------------------------------------------------
DOCKERD_PID=""      # set only if *we* started dockerd
DOCKERD_FLAGS_USED=""

wait_engine() {  # wait_engine PID -> 0 when `docker info` works, 1 if PID died/timeout
  local pid=$1 deadline=$((SECONDS + WAIT_SECS))
  while [ $SECONDS -lt $deadline ]; do
    engine_ok && return 0
    [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null && return 1
    sleep 0.25
  done
  return 1
}

stop_our_dockerd() {
  [ -n "$DOCKERD_PID" ] || return 0
  as_root kill "$DOCKERD_PID" 2>/dev/null || true
  local _; for _ in $(seq 1 60); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
  DOCKERD_PID=""
}

start_dockerd() {  # start_dockerd FLAG... -> 0 if the engine answers within WAIT_SECS
  local t0; t0=$(now)
  log "starting dockerd ${*:-(no extra flags)} (log: $DOCKERD_LOG)"
  echo "=== docker-setup: $(date -Is) dockerd $* ===" | as_root tee -a "$DOCKERD_LOG" >/dev/null
  # setsid+nohup: detach from this shell's session/process group so dockerd
  # keeps running after the script (or the CI step that ran it) exits.
  # Launched directly (not via the as_root function, which would leave a
  # bash subshell as $!): setsid and nohup exec in place, so $! is dockerd
  # itself; under sudo it is sudo, which forwards signals to dockerd.
  # 9>&-: do not leak our flock fd into the long-lived daemon.
  [ "${SUDO[0]:-}" = __need_root__ ] && die "need root (or passwordless sudo) to start dockerd"
  "${SUDO[@]}" setsid nohup dockerd "$@" >>"$DOCKERD_LOG" 2>&1 </dev/null 9>&- &
  DOCKERD_PID=$!
  if wait_engine "$DOCKERD_PID"; then
    DOCKERD_FLAGS_USED="$*"
    log "engine up in $(since "$t0")s (storage driver: $(docker info --format '{{.Driver}}'))"
    return 0
  fi
  log "dockerd ${*:-(default)} did not come up; last log lines:"
  { grep -iE 'level=(error|fatal)|failed to start' "$DOCKERD_LOG" || tail -n 5 "$DOCKERD_LOG"; } 2>/dev/null |
    tail -n 5 | sed 's/^/docker-setup:   | /' || true
  stop_our_dockerd
  return 1
}

setup_engine() {
  if engine_ok; then
    log "docker engine already running (server $(docker version --format '{{.Server.Version}}'), driver $(docker info --format '{{.Driver}}')); skipping engine setup"
    return 0
  fi
  ensure_tools
  # A dockerd may already be starting (pid file with a live process): wait for
  # it instead of launching a second one, which would fail on the pid file.
  local old; old=$(cat /var/run/docker.pid 2>/dev/null || true)
  if [ -n "$old" ] && kill -0 "$old" 2>/dev/null; then
    log "dockerd (pid $old) already running but not answering; waiting up to ${WAIT_SECS}s"
    wait_engine "$old" && { log "engine is up"; return 0; }
    die "dockerd pid $old is running but 'docker info' fails; see $DOCKERD_LOG or stop it and rerun"
  fi

  if [ -n "${MT_DOCKERD_FLAGS:-}" ]; then
    # shellcheck disable=SC2086
    start_dockerd $MT_DOCKERD_FLAGS && return 0
    die "dockerd failed to start with MT_DOCKERD_FLAGS='$MT_DOCKERD_FLAGS'; see $DOCKERD_LOG"
  fi
  # Flag fallbacks, tried in order:
  # a) no flags. On the reference machine (Debian 12 VM, kernel 6.18, ext4
  #    root, cgroup v1 hybrid with memory/pids/cpu controllers, iptables-nft)
  #    plain dockerd works: overlay2, bridge networking via iptables and all
  #    resource limits are enforced. Nothing else was needed there.
  # b) --storage-driver=vfs: for hosts where overlay2 cannot be used (e.g. the
  #    docker root is itself on overlayfs inside a container). vfs works
  #    everywhere but copies the whole image per container (~7 s per
  #    `docker run` for this ~200 MB image instead of ~0.3 s).
  # c) additionally --iptables=false --ip-masq=false --bridge=none: for hosts
  #    where dockerd may not touch iptables/netfilter (unprivileged
  #    containers). The default network then becomes `none`, which is all we
  #    use (--network none); verified that run/import still work that way.
  start_dockerd && return 0
  start_dockerd --storage-driver=vfs && return 0
  start_dockerd --storage-driver=vfs --iptables=false --ip-masq=false --bridge=none && return 0
  die "could not start dockerd with any flag set; see $DOCKERD_LOG (cgroups mounted? running as root in a privileged environment?)"
}

# ---------------------------------------------------------------------------
# 2. Base image (debootstrap rootfs cached as a tarball)
# ---------------------------------------------------------------------------
ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)
CACHE_KEY="$SUITE-$ARCH-minbase-$(printf %s "$INCLUDE" | md5sum | cut -c1-8)"
ROOTFS_TAR="$MT_CACHE_DIR/rootfs-$CACHE_KEY.tar.gz"

detect_mirror() {  # print Debian mirror URLs for $SUITE from apt's config
  [ -n "${MT_DEBIAN_MIRROR:-}" ] && { echo "$MT_DEBIAN_MIRROR"; return; }
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    # one-line format: deb [opts] URL SUITE COMPONENT...
    awk -v s="$SUITE" '$1=="deb" { i=2; if ($i ~ /^\[/) { while (i<=NF && $i !~ /\]$/) i++; i++ }
                                  if ($(i+1)==s) print $i }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    # deb822 format: stanzas with Types:/URIs:/Suites:/Enabled:
    awk -v s="$SUITE" 'BEGIN{RS=""; FS="\n"}
      { t=u=su=""; en=1
        for (i=1;i<=NF;i++) { l=$i; if (l ~ /^[ \t]*#/) continue
          if (match(l, /^[A-Za-z-]+:/)) { k=tolower(substr(l,1,RLENGTH-1)); v=substr(l,RLENGTH+1)
            if (k=="types") t=v; else if (k=="uris") u=v; else if (k=="suites") su=" " v " "
            else if (k=="enabled" && v ~ /[Nn]o/) en=0 } }
        if (en && t ~ /(^|[ \t])deb([ \t]|$)/ && su ~ ("[ \t]" s "[ \t]")) {
          n=split(u, a, /[ \t]+/); for (j=1;j<=n;j++) if (a[j]!="") print a[j] } }' "$f"
  done
}

pick_mirror() {
  local m fetch
  if command -v curl >/dev/null 2>&1; then fetch=(curl -fsS --max-time 15 -o /dev/null)
  else fetch=(wget -q -T 15 -O /dev/null); fi
  for m in $(detect_mirror | awk '!seen[$0]++'); do
    case $m in http://*|https://*) ;; *) continue ;; esac
    if "${fetch[@]}" "${m%/}/dists/$SUITE/Release"; then echo "${m%/}"; return 0; fi
    log "mirror $m not reachable, trying next" >&2
  done
  return 1
}

build_rootfs_tarball() {
  command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
  local mirror; mirror=$(pick_mirror) ||
    die "no reachable Debian '$SUITE' mirror found in apt sources; set MT_DEBIAN_MIRROR"
  # debootstrap downloads with wget: pass on an apt proxy if one is configured.
  local HTTP_PROXY_APT=""
  eval "$(apt-config shell HTTP_PROXY_APT Acquire::http::Proxy 2>/dev/null)" || true
  [ -n "$HTTP_PROXY_APT" ] && [ -z "${http_proxy:-}" ] && export http_proxy=$HTTP_PROXY_APT

  local work; work=$(mktemp -d "$TMPD/mt-debootstrap.XXXXXX")
  # --one-file-system: never descend into something left mounted in the chroot.
  # shellcheck disable=SC2064
  trap "as_root rm -rf --one-file-system '$work' 2>/dev/null || true" EXIT
  local t0; t0=$(now)
  log "debootstrap --variant=minbase --include=$INCLUDE $SUITE (mirror $mirror)"
  if ! as_root debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$work/root" "$mirror" \
      >"$work/debootstrap.log" 2>&1; then
    tail -n 20 "$work/debootstrap.log" | sed 's/^/docker-setup:   | /' >&2
    cp "$work/debootstrap.log" "$TMPD/mt-debootstrap-failed.log" 2>/dev/null || true
    die "debootstrap failed (log: $TMPD/mt-debootstrap-failed.log)"
  fi
  log "debootstrap done in $(since "$t0")s"
  if grep -q " $work/root" /proc/mounts; then die "something is still mounted under $work/root"; fi
  # Slim down: apt caches/lists (re-fetch with apt-get update), host-specific
  # files that docker bind-mounts anyway, and device nodes (docker mounts /dev).
  as_root sh -c "cd '$work/root' && rm -rf var/cache/apt/archives/*.deb var/cache/apt/*.bin \
    var/lib/apt/lists/* var/log/* etc/resolv.conf etc/hostname && find dev -mindepth 1 -delete"
  mkdir -p "$MT_CACHE_DIR"
  local tmp="$ROOTFS_TAR.partial.$$"
  as_root tar --numeric-owner -C "$work/root" -c . | gzip -1 >"$tmp"
  mv -f "$tmp" "$ROOTFS_TAR"   # atomic: a half-written cache is never used
  as_root rm -rf --one-file-system "$work"; trap - EXIT
  log "cached rootfs tarball: $ROOTFS_TAR ($(du -h "$ROOTFS_TAR" | cut -f1))"
}

import_image() {
  local t0; t0=$(now)
  log "docker import $ROOTFS_TAR -> $MT_BASE_IMAGE"
  docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
    --message "mt-core base $CACHE_KEY" "$ROOTFS_TAR" "$MT_BASE_IMAGE" >/dev/null ||
    die "docker import failed"
  log "imported in $(since "$t0")s"
}

ensure_image() {
  if docker image inspect "$MT_BASE_IMAGE" >/dev/null 2>&1; then
    log "image $MT_BASE_IMAGE already present; skipping build"
    return 0
  fi
  if [ -s "$ROOTFS_TAR" ] && gzip -t "$ROOTFS_TAR" 2>/dev/null; then
    log "using cached rootfs $ROOTFS_TAR (no debootstrap needed)"
  else
    build_rootfs_tarball
  fi
  import_image
}

# ---------------------------------------------------------------------------
# 3. Verification
# ---------------------------------------------------------------------------
smoke_test() {
  local out
  out=$(docker run --rm --network none "$MT_BASE_IMAGE" python3 -c "print('ok')" 2>&1) || {
    log "smoke run failed: $out"; return 1; }
  [ "$out" = ok ] || { log "smoke run printed '$out' instead of 'ok'"; return 1; }
}

check_python() {
  local v p
  v=$(docker run --rm --network none "$MT_BASE_IMAGE" python3 --version 2>&1) || die "python3 --version failed: $v"
  p=$(docker run --rm --network none "$MT_BASE_IMAGE" python3 -m pip --version 2>&1) || die "pip missing in image: $p"
  docker run --rm --network none "$MT_BASE_IMAGE" python3 -c "import venv, ensurepip" >/dev/null 2>&1 ||
    die "python3 venv/ensurepip not usable in image"
  log "image python: $v; ${p%% from*}"
}

check_hardening() {
  # Run once with all flags; inside, confirm each limit really took effect
  # (docker only *warns* and drops e.g. --memory when the cgroup controller is
  # missing, so "it ran" is not enough).
  local probe out
  probe='
import os
def rd(*ps):
    for p in ps:
        try: return open(p).read().strip()
        except OSError: pass
    return "?"
st = {l.split(":")[0]: l.split(":")[1].strip() for l in open("/proc/self/status") if ":" in l}
try:
    open("/rootfs-write-test", "w"); ro = "no"
except OSError: ro = "yes"
open("/tmp/x", "w").write("x")
print("uid=%d gid=%d" % (os.getuid(), os.getgid()))
print("readonly_root=" + ro)
print("tmpfs_tmp=" + ("yes" if any(l.split()[1] == "/tmp" and l.split()[0] == "tmpfs" for l in open("/proc/mounts")) else "no"))
print("capeff=" + st.get("CapEff", "?"))
print("capbnd=" + st.get("CapBnd", "?"))
print("nonewprivs=" + st.get("NoNewPrivs", "?"))
print("ifaces=" + ",".join(sorted(os.listdir("/sys/class/net"))))
print("mem=" + rd("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"))
print("pids=" + rd("/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max"))
cpu = rd("/sys/fs/cgroup/cpu.max")
if cpu == "?": cpu = rd("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") + " " + rd("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
print("cpu=" + cpu)
'
  if ! out=$(docker run --rm "${HARDEN_FLAGS[@]}" "$MT_BASE_IMAGE" python3 -c "$probe" 2>&1); then
    log "hardened run FAILED: $out"
    local g
    # Pinpoint the culprit: try each flag alone.
    for g in "${HARDEN_GROUPS[@]}"; do
      # shellcheck disable=SC2086
      if docker run --rm $g "$MT_BASE_IMAGE" true >/dev/null 2>&1; then log "  flag $g: ok"
      else log "  flag $g: FAILS: $( (docker run --rm $g "$MT_BASE_IMAGE" true 2>&1 || true) | head -n 1)"; fi
    done
    die "hardening flags do not all work on this engine"
  fi
  local want bad=0 line
  for want in "uid=65534 gid=65534" "readonly_root=yes" "tmpfs_tmp=yes" \
              "capeff=0000000000000000" "capbnd=0000000000000000" "nonewprivs=1" \
              "ifaces=lo" "mem=268435456" "pids=64" ; do
    grep -qxF "$want" <<<"$out" || { log "hardening check: expected '$want'"; bad=1; }
  done
  line=$(grep '^cpu=' <<<"$out")
  case $line in "cpu=100000 100000") ;; *) log "hardening check: expected 1 CPU quota, got '$line'"; bad=1 ;; esac
  [ $bad = 0 ] || { printf '%s\n' "$out" | sed 's/^/docker-setup:   | /'; die "some hardening flags were accepted but not enforced"; }
  # The 64m tmpfs size cap.
  docker run --rm "${HARDEN_FLAGS[@]}" "$MT_BASE_IMAGE" sh -c \
    'dd if=/dev/zero of=/tmp/f bs=1M count=80 2>/dev/null; test $(du -m /tmp/f | cut -f1) -le 64' ||
    die "tmpfs size limit not enforced"
  log "hardening flags OK: ${HARDEN_FLAGS[*]}"
}

bench() {  # latency numbers relevant for a warm-pool design
  local t0 t1 c s=() cs=() ex=()
  median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
  for _ in 1 2 3 4 5; do t0=$(now); docker run --rm "$MT_BASE_IMAGE" true; s+=("$(since "$t0")"); done
  log "bench: docker run --rm IMAGE true (cold): median $(median "${s[@]}")s [${s[*]}]"
  for _ in 1 2 3 4 5; do
    t0=$(now)
    c=$(docker create "${HARDEN_FLAGS[@]}" "$MT_BASE_IMAGE" sleep infinity)
    docker start "$c" >/dev/null
    cs+=("$(since "$t0")"); t1=$(now)
    docker exec "$c" python3 -c pass
    ex+=("$(since "$t1")")
    docker rm -f "$c" >/dev/null
  done
  log "bench: docker create+start (hardened): median $(median "${cs[@]}")s [${cs[*]}]"
  log "bench: docker exec C python3 -c pass (running C): median $(median "${ex[@]}")s [${ex[*]}]"
}

main() {
  local t0; t0=$(now)
  mkdir -p "$MT_CACHE_DIR"
  # Serialise concurrent runs (e.g. parallel CI jobs on one host).
  exec 9>"$MT_CACHE_DIR/.docker-setup.lock"
  flock -w 900 9 || die "timed out waiting for another docker-setup run"

  setup_engine
  ensure_image
  if ! smoke_test; then
    # overlay2 can start fine yet fail at container mount time on some hosts:
    # if we own the daemon, fall back to vfs and re-import from the cache.
    if [ -n "$DOCKERD_PID" ] && [ "$(docker info --format '{{.Driver}}')" != vfs ] && [ -z "${MT_DOCKERD_FLAGS:-}" ]; then
      log "retrying with --storage-driver=vfs"
      stop_our_dockerd
      start_dockerd --storage-driver=vfs || die "dockerd with vfs failed; see $DOCKERD_LOG"
      ensure_image
      smoke_test || die "container smoke test failed even with vfs; see $DOCKERD_LOG"
    else
      die "container smoke test failed (docker run --rm --network none $MT_BASE_IMAGE python3 -c \"print('ok')\")"
    fi
  fi
  log "smoke test OK: 'docker run --rm --network none $MT_BASE_IMAGE python3' printed ok"
  check_python
  check_hardening
  [ "${MT_DOCKER_BENCH:-0}" = 1 ] && bench
  log "image $MT_BASE_IMAGE: $(docker image inspect --format '{{.Size}}' "$MT_BASE_IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
  log "done in $(since "$t0")s${DOCKERD_FLAGS_USED:+ (dockerd flags: $DOCKERD_FLAGS_USED)}"
}

main "$@"
