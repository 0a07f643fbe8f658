#!/usr/bin/env bash
# Makes Apache Kafka 4.2.1 runnable as a local process for the tests (see run.sh):
#   $assets/kafka/libs  the broker's runtime classpath, resolved from Maven with pom.xml
#                       (local repository $cache/m2, so later runs need no network);
#   $assets/kafka/cds   class-data archives recorded by one start of the broker, like the image's
#                       kafka.jsa/storage.jsa: setup+start drops from ~6 s to ~3.3 s. They belong to
#                       the `java` on PATH; another JDK ignores them (one warning line, slower start).
# Idempotent: each part is built in a temporary folder and moved into place when complete.
# Usage: cache=DIR assets=DIR bash tests/env/kafka/build.sh
set -euo pipefail
: "${cache:?cache must be set}" "${assets:?assets must be set}"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dest="$assets/kafka"
mkdir -p "$dest" "$cache/m2"
log() { echo "kafka: $*" >&2; }
fail() { tail -n 60 "$1" >&2; rm -f "$1"; log "FAILED: $2"; exit 1; }
if [ ! -d "$dest/libs" ] || [ ! -f "$dest/cds/kafka.jsa" ]; then
  log "preparing Apache Kafka 4.2.1 in $dest (first run only)"
fi

if [ ! -d "$dest/libs" ]; then
  tmp=$(mktemp -d "$dest/.libs.XXXXXX"); out=$(mktemp)
  mvn -B -q -Dstyle.color=never -f "$here/pom.xml" -Dmaven.repo.local="$cache/m2" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" >"$out" 2>&1 \
    || { rm -rf "$tmp"; fail "$out" "mvn dependency:copy-dependencies"; }
  ls "$tmp"/kafka_2.13-4.2.1.jar >"$out" 2>&1 || { rm -rf "$tmp"; fail "$out" "kafka_2.13 jar missing"; }
  rm -f "$out"
  mv -T "$tmp" "$dest/libs" 2>/dev/null || rm -rf "$tmp" # lost a race: keep the other copy
fi

if [ ! -f "$dest/cds/kafka.jsa" ]; then
  work=$(mktemp -d); out="$work/out"
  read -r port ctl < <(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
  env -i PATH="$PATH" HOME="$HOME" ${JAVA_HOME:+JAVA_HOME="$JAVA_HOME"} CDS_DUMP=1 \
    CLUSTER_ID=dHJhY2luZ2xhYi1rYWZrYQ KAFKA_NODE_ID=1 KAFKA_PROCESS_ROLES=broker,controller \
    KAFKA_LISTENERS="PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$ctl" \
    KAFKA_ADVERTISED_LISTENERS="PLAINTEXT://127.0.0.1:$port" \
    KAFKA_LISTENER_SECURITY_PROTOCOL_MAP=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT \
    KAFKA_CONTROLLER_LISTENER_NAMES=CONTROLLER KAFKA_INTER_BROKER_LISTENER_NAME=PLAINTEXT \
    KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:$ctl" KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR=1 \
    KAFKA_LOG_DIRS="$work/data" KAFKA_HEAP_OPTS="-Xms256m -Xmx256m" LOG_DIR="$work/logs" \
    bash "$here/run.sh" "$dest/libs" "$work/config" "$work/cds" >"$out" 2>&1 &
  pid=$!
  up=
  for _ in $(seq 1 1200); do
    if (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then up=1; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [ -z "$up" ] || [ ! -s "$work/cds/kafka.jsa" ] || [ ! -s "$work/cds/storage.jsa" ]; then
    keep=$(mktemp); cp "$out" "$keep"; rm -rf "$work"; fail "$keep" "Kafka 4.2.1 did not start from $dest/libs"
  fi
  mv -T "$work/cds" "$dest/cds" 2>/dev/null || true
  rm -rf "$work"
fi
