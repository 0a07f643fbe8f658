#!/usr/bin/env bash
# The upstream images the lab pins (apache/kafka, redis, jaegertracing/jaeger,
# otel/opentelemetry-collector-contrib, prom/prometheus), made here under their names and tags
# because no registry can be reached: each from its Dockerfile in this folder (which says what
# differs from upstream's) on debian:bookworm-slim, with the artefacts tests/env/setup.sh built.
# An image is rebuilt only when its inputs change: its label tracing-lab.inputs hashes the build
# context and the base image.
# Usage: cache=DIR assets=DIR DOCKER_HOST=... [DOCKER_BUILD_FLAGS=...] bash tests/env/images/upstream.sh
set -euo pipefail
: "${cache:?set cache to the cache folder}" "${assets:?set assets to the binaries folder}"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
log() { echo "images: $*" >&2; }
fail() { log "FAILED: $*"; exit 1; }
base=debian:bookworm-slim
images=(kafka:apache/kafka:4.2.1 redis:redis:8.6.3-alpine jaeger:jaegertracing/jaeger:2.13.0
        otelcol:otel/opentelemetry-collector-contrib:0.161.0 prometheus:prom/prometheus:v3.16.0)

base_id=$(docker image inspect -f '{{.Id}}' "$base" 2>/dev/null) || fail "$base is missing (run images/base.sh)"
for artefact in "$assets/kafka/libs/kafka_2.13-4.2.1.jar" "$assets/jaeger" "$assets/otelcol" \
    "$assets/prometheus"; do
  [ -e "$artefact" ] || fail "$artefact is missing (run tests/env/setup.sh)"
done

# Fills the build context $2 of image $1 with what its Dockerfile copies.
fill() {
  local name=$1 dir=$2
  cp "$here/$name/Dockerfile" "$dir/"
  case $name in
    kafka)
      cp -a "$assets/kafka/libs" "$dir/libs"
      cp "$here/../kafka/config/log4j2.yaml" "$here/../kafka/config/tools-log4j2.yaml" \
        "$here/kafka/server.properties" "$here/kafka/run" "$dir/" ;;
    redis) cp "$here/redis/docker-entrypoint.sh" "$dir/" ;;
    jaeger) cp "$assets/jaeger" "$dir/jaeger-linux"; cp "$here/jaeger/sampling-strategies.json" "$dir/" ;;
    otelcol) cp "$assets/otelcol" "$dir/otelcol-contrib"; cp "$here/otelcol/config.yaml" "$dir/" ;;
    prometheus) cp "$assets/prometheus" "$dir/prometheus"; cp "$here/prometheus/prometheus.yml" "$dir/" ;;
  esac
  chmod -R a+rX "$dir"
}

# The inputs' hash: every path of the context with its mode and content, and the base image.
inputs() {
  (cd "$1" && find . -printf '%p %m\n' | LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z \
    | xargs -0 sha256sum && echo "$base_id") | sha256sum | cut -c1-64
}

for entry in "${images[@]}"; do
  name=${entry%%:*} tag=${entry#*:}
  dir=$(mktemp -d "$cache/image-$name.XXXXXX")
  out="$dir.log"
  trap 'rm -rf "$dir" "$out"' EXIT
  fill "$name" "$dir"
  hash=$(inputs "$dir")
  if [ "$(docker image inspect -f '{{index .Config.Labels "tracing-lab.inputs"}}' "$tag" 2>/dev/null)" = "$hash" ]; then
    rm -rf "$dir"; continue
  fi
  log "building $tag"
  start=$SECONDS
  # shellcheck disable=SC2086 # DOCKER_BUILD_FLAGS holds several flags
  if ! docker build ${DOCKER_BUILD_FLAGS:-} --label "tracing-lab.inputs=$hash" -t "$tag" "$dir" >"$out" 2>&1; then
    tail -n 40 "$out" >&2
    fail "$tag, see the lines above"
  fi
  log "built $tag in $((SECONDS - start)) s"
  rm -rf "$dir" "$out"
  trap - EXIT
done
