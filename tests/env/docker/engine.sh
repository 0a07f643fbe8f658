#!/usr/bin/env bash
# A private Docker engine for building the lab's images: Debian's dockerd with its own data-root,
# exec-root, socket and pid file under "$cache/docker", so it shares nothing with another engine on
# the machine and its layer cache outlives the run. It leaves the host's network alone (no bridge,
# no iptables rules): builds run with `--network host` (DOCKER_BUILD_FLAGS).
# Usage: cache=DIR bash tests/env/docker/engine.sh start|stop
#   start prints `export DOCKER_HOST=...` once the engine answers; stop ends it and waits.
set -euo pipefail
: "${cache:?set cache to the cache folder}"
dir="$cache/docker"
sock="$dir/docker.sock" pidfile="$dir/docker.pid"
log() { echo "docker: $*" >&2; }
# exec-root holds containerd's sockets: a short path keeps them under the 108-byte limit.
exec_root="/run/tracing-lab-docker"

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case ${1:-} in
start)
  command -v dockerd >/dev/null || { log "dockerd is missing (Debian package docker.io)"; exit 1; }
  mkdir -p "$dir/root"
  pid=
  if ! running; then
    rm -f "$sock" "$pidfile"
    dockerd --data-root "$dir/root" --exec-root "$exec_root" -H "unix://$sock" --pidfile "$pidfile" \
      --bridge none --iptables=false --ip-masq=false --ip6tables=false >"$dir/dockerd.log" 2>&1 &
    pid=$!
  fi
  for _ in $(seq 1 300); do
    DOCKER_HOST="unix://$sock" docker version >/dev/null 2>&1 && break
    [ -z "$pid" ] || kill -0 "$pid" 2>/dev/null || { tail -n 30 "$dir/dockerd.log" >&2; log "FAILED to start dockerd"; exit 1; }
    sleep 0.2
  done
  DOCKER_HOST="unix://$sock" docker version >/dev/null 2>&1 || { tail -n 30 "$dir/dockerd.log" >&2; log "dockerd does not answer"; exit 1; }
  echo "export DOCKER_HOST='unix://$sock'"
  ;;
stop)
  if running; then
    pid=$(cat "$pidfile")
    kill "$pid"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && { log "dockerd $pid did not stop; killing it"; kill -9 "$pid"; }
  fi
  rm -f "$sock" "$pidfile"
  # dockerd leaves its exec-root behind, with the default network namespace still mounted there.
  if [ -d "$exec_root" ]; then
    awk -v root="$exec_root/" 'index($2, root) == 1 { print $2 }' /proc/self/mounts | sort -r |
      while read -r mounted; do umount "$mounted"; done
    rm -rf "$exec_root"
  fi
  ;;
*) echo "usage: engine.sh start|stop" >&2; exit 2 ;;
esac
