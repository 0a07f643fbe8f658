#!/usr/bin/env bash
# Builds every image a lab runs, with Docker, for the real-node tests: a private engine
# (docker/engine.sh) makes the base images the Dockerfile names (images/base.sh), then runs
# `make images` as a student does, builds the upstream images the lab pins (images/upstream.sh),
# and writes them into one archive with `make bundle`, as an instructor does for an offline room:
# the tests import it into the node's containerd as `kind load image-archive` does.
# The engine's data-root and the archive live in the cache, so an unchanged tree rebuilds nothing.
# Usage: eval "$(bash tests/env/images.sh)"   (after tests/env/setup.sh; prints TRACING_LAB_IMAGES)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
export cache="${TRACING_LAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tracing-lab}"
export assets="$cache/assets"
log() { echo "images: $*" >&2; }

eval "$(bash "$here/docker/engine.sh" start)"
trap 'bash "$here/docker/engine.sh" stop' EXIT
# The engine has no bridge network (it leaves the host's iptables alone): builds use the host's.
export DOCKER_BUILD_FLAGS="--network host"

bash "$here/images/base.sh"
start=$SECONDS
out=$(mktemp)
if ! "${MAKE:-make}" -C "$root" --no-print-directory images DOCKER_BUILD_FLAGS="$DOCKER_BUILD_FLAGS" >"$out" 2>&1; then
  tail -n 60 "$out" >&2; rm -f "$out"; log "FAILED: make images"; exit 1
fi
rm -f "$out"
log "make images: $((SECONDS - start)) s"
bash "$here/images/upstream.sh"

# What the examples run: the operator names their upstream images; the two project images beside
# them. `make bundle` saves the same list.
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)
images=("tracing-lab-operator:$version" "tracing-lab-service:$version")
while read -r image; do images+=("$image"); done < <(
  for lab in "$root"/examples/*.yaml; do echo ---; cat "$lab"; done |
    docker run --rm -i "tracing-lab-operator:$version" images -f - | grep -v '^tracing-lab-service:')
ids=$(for image in "${images[@]}"; do echo "$image $(docker image inspect -f '{{.Id}}' "$image")"; done)
bundle="$cache/images/lab.tar"
if [ ! -f "$bundle" ] || [ "$(cat "$bundle.ids" 2>/dev/null)" != "$ids" ]; then
  rm -rf "$bundle" "$cache/images/lab" "$cache/images/lab.ids"
  mkdir -p "$(dirname "$bundle")"
  "${MAKE:-make}" -C "$root" --no-print-directory bundle BUNDLE="$bundle" DOCKER_BUILD_FLAGS="$DOCKER_BUILD_FLAGS" >&2
  echo "$ids" >"$bundle.ids"
  log "make bundle: ${images[*]} into $bundle"
fi
echo "export TRACING_LAB_IMAGES='$bundle'"
