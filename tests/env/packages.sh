#!/usr/bin/env bash
# Installs the Debian packages that building and testing need, before anything is compiled:
# rdkafka's bundled librdkafka builds with cmake and needs the curl headers; the tests run Debian's
# redis-server, Kafka on a Java runtime (resolved with Maven), and openssl for the API server's keys.
# The real node and the images: Debian's Docker engine (with containerd and runc, which the node's
# CRI runtime also uses), debootstrap for the base image, iptables for kube-proxy and the CNI.
# ShellCheck and posh check that what students run is POSIX sh.
# Go (1.24 or newer, for the Kubernetes, Collector and Jaeger builds) comes with the machine.
set -euo pipefail
log() { echo "packages: $*" >&2; }

need=()
for p in cmake curl libcurl4-openssl-dev redis-server openssl unzip docker.io containerd runc debootstrap iptables shellcheck posh; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
if [ ${#need[@]} -gt 0 ]; then
  log "apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  out=$(mktemp)
  if ! { apt-get update && apt-get install -y --no-install-recommends "${need[@]}"; } >"$out" 2>&1; then
    tail -n 40 "$out" >&2; log "FAILED to install ${need[*]}"; exit 1
  fi
  rm -f "$out"
fi

command -v go >/dev/null || { log "Go is missing: the test servers are built with Go 1.24 or newer"; exit 1; }
go_minor=$(go env GOVERSION | sed -n 's/^go1\.\([0-9]*\).*/\1/p')
[ "${go_minor:-0}" -ge 24 ] || { log "Go $(go env GOVERSION) is too old: 1.24 or newer is needed"; exit 1; }
java_major=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
[ "${java_major:-0}" -ge 17 ] || { log "Java ${java_major:-?} is too old: Kafka 4 needs 17 or newer"; exit 1; }
