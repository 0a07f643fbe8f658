#!/usr/bin/env bash
# Starts one Apache Kafka 4.2.1 node the way the apache/kafka:4.2.1 image starts itself
# (docker/resources/common-scripts/run -> configureDefaults, configure, docker/jvm/launch):
#   1. `kafka.docker.KafkaDockerWrapper setup` turns every KAFKA_* env var (except the JVM-option ones)
#      into CONFIG_DIR/server.properties, copies the log4j2 configs from ./config, and formats the
#      log dirs with $CLUSTER_ID. A node that is already formatted is accepted, as the image does.
#   2. exec java ... kafka.Kafka CONFIG_DIR/server.properties, so the caller's pid becomes the broker's.
#
# Usage: run.sh LIBS_DIR CONFIG_DIR [CDS_DIR]
#   env: CLUSTER_ID, KAFKA_* (as the operator renders them), LOG_DIR, KAFKA_HEAP_OPTS.
#   Start it with a clean environment: the wrapper writes EVERY KAFKA_* variable it sees into
#   server.properties (KAFKA_BOOTSTRAP_SERVERS would become `bootstrap.servers=...`).
#   CDS_DIR: class-data archives kafka.jsa/storage.jsa made by build.sh (the image ships the same
#   two). Missing ones only cost start-up time; CDS_DUMP=1 records them instead.
set -euo pipefail
libs=$1 config=$2 cds=${3:-}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# configureDefaults and configure (the parts that apply to a plaintext KRaft node)
export CLUSTER_ID=${CLUSTER_ID:-5L6g3nShT-eMCtK--X86sw}
if [[ -z "${KAFKA_LISTENERS-}" && "${KAFKA_PROCESS_ROLES-}" != controller && -n "${KAFKA_ADVERTISED_LISTENERS-}" ]]; then
  KAFKA_LISTENERS=$(echo "$KAFKA_ADVERTISED_LISTENERS" | sed -e 's|://[^:]*:|://0.0.0.0:|g')
  export KAFKA_LISTENERS
fi

log_dir=${LOG_DIR:-$config/logs}
mkdir -p "$config" "$log_dir"
# kafka-server-start.sh / kafka-run-class.sh defaults
heap=${KAFKA_HEAP_OPTS:--Xmx1G -Xms1G}
jmx=${KAFKA_JMX_OPTS:--Dcom.sun.management.jmxremote=true -Dcom.sun.management.jmxremote.authenticate=false -Dcom.sun.management.jmxremote.ssl=false}
cds_opt() { # the image's launch sets KAFKA_JVM_PERFORMANCE_OPTS to "<user's> -XX:SharedArchiveFile=..."
  [ -n "$cds" ] || return 0
  if [ "${CDS_DUMP:-}" = 1 ]; then mkdir -p "$cds"; echo "-XX:ArchiveClassesAtExit=$cds/$1.jsa"
  elif [ -f "$cds/$1.jsa" ]; then echo "-XX:SharedArchiveFile=$cds/$1.jsa"; fi
}

# shellcheck disable=SC2086 # option strings are word-split on purpose, as in kafka-run-class.sh
if ! out=$(java $heap ${KAFKA_JVM_PERFORMANCE_OPTS-} $(cds_opt storage) $jmx -Dkafka.logs.dir="$log_dir" \
      -Dlog4j2.configurationFile="$here/config/tools-log4j2.yaml" -cp "$libs/*" \
      kafka.docker.KafkaDockerWrapper setup --default-configs-dir "$here/config" \
      --mounted-configs-dir "$config/mounted" --final-configs-dir "$config" 2>&1); then
  grep -qi "already formatted" <<<"$out" || { echo "$out" >&2; exit 1; }
fi

# shellcheck disable=SC2086
exec java $heap ${KAFKA_JVM_PERFORMANCE_OPTS-} $(cds_opt kafka) \
  "-Xlog:gc*:file=$log_dir/kafkaServer-gc.log:time,tags:filecount=10,filesize=100M" \
  $jmx -Dkafka.logs.dir="$log_dir" ${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=$config/log4j2.yaml} \
  -cp "$libs/*" ${KAFKA_OPTS-} kafka.Kafka "$config/server.properties"
