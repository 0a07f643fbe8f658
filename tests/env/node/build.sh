#!/usr/bin/env bash
# Builds what the real test node (tests/src/node.rs) runs besides the Kubernetes binaries of
# ../kube and Debian's containerd, from the Go module proxy at the versions locked in the go.mod/go.sum
# files beside this script:
#   $assets/cni/{bridge,host-local,loopback,portmap,firewall}   CNI plugins v1.9.1 (./cni)
#   $assets/node-images/pause.tar     registry.k8s.io/pause:3.10.1, the sandbox image (./pause)
#   $assets/node-images/coredns.tar   tracing-lab.test/coredns:1.15.0, CoreDNS with the plugins
#                                     the node's Corefile uses (./coredns)
#   $assets/node-images/netcheck.tar  tracing-lab.test/netcheck:1, a DNS/HTTP probe for tests
#                                     (./netcheck)
# The images are FROM scratch: one static binary each, written here as docker-archive tarballs
# (what `docker save` writes and `ctr images import` reads) so that neither this build nor the
# tests need a Docker engine, and the same sources give the same bytes (image ids) on every machine.
# Go's module and build caches live under "$cache/go"; a run whose outputs match the sources here
# (a stamp holds their hash) does nothing.
# Usage: cache=DIR assets=DIR bash tests/env/node/build.sh
# Silent when up to date; one line on stderr after a build; the tail of the build log on failure.
set -euo pipefail

: "${cache:?set cache to the cache folder}" "${assets:?set assets to the output folder}"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

cni_plugins=(bridge host-local loopback portmap firewall)
images=(pause coredns netcheck)
stamp="$assets/node-images/.build-stamp"
sources=$(cd "$here" && find . -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
up_to_date() {
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sources" ] || return 1
  for p in "${cni_plugins[@]}"; do [ -x "$assets/cni/$p" ] || return 1; done
  for i in "${images[@]}"; do [ -f "$assets/node-images/$i.tar" ] || return 1; done
}
up_to_date && exit 0

mkdir -p "$assets/cni" "$assets/node-images" "$cache/go/mod" "$cache/go/build"
export GOTOOLCHAIN=local              # the machine's Go; CoreDNS 1.15 needs >= 1.26
export GOMODCACHE="$cache/go/mod" GOCACHE="$cache/go/build"
export GOWORK=off CGO_ENABLED=0       # static binaries: they run alone in FROM-scratch images
# readonly: go.mod/go.sum are the lock; modcacherw: the cache can be deleted with rm -rf;
# buildvcs=false: the binaries do not depend on the state of the project's git checkout.
export GOFLAGS="-mod=readonly -modcacherw -buildvcs=false"
arch=$(go env GOARCH)

work=$(mktemp -d "$assets/.node.tmp.XXXXXX")
log="$work/build.log"
trap 'rm -rf "$work"' EXIT
run() {
  if ! "$@" >>"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "node: FAILED: $*" >&2
    exit 1
  fi
}
start=$SECONDS
times=()
timed() { # timed LABEL COMMAND...: runs COMMAND, noting how long it took
  local t0=$SECONDS label=$1
  shift
  "$@"
  times+=("$label $((SECONDS - t0))s")
}

build_cni() {
  local cni=github.com/containernetworking/plugins
  local version
  version=$(cd "$here/cni" && go list -m -f '{{.Version}}' "$cni")
  mkdir "$work/cni"
  (cd "$here/cni" && run go build -trimpath \
    -ldflags "-s -w -X $cni/pkg/utils/buildversion.BuildVersion=$version" -o "$work/cni/" \
    "$cni/plugins/main/bridge" "$cni/plugins/ipam/host-local" "$cni/plugins/main/loopback" \
    "$cni/plugins/meta/portmap" "$cni/plugins/meta/firewall")
}

build_programs() {
  mkdir "$work/bin"
  (cd "$here" && run go build -trimpath -ldflags "-s -w" -o "$work/bin/" ./coredns ./pause ./netcheck)
}

# docker_archive TAG OUT BINARY [USER]: a FROM-scratch image holding BINARY as /NAME, its entrypoint,
# as a docker-archive tarball (manifest.json, the config named by its digest, one layer).
docker_archive() {
  local tag=$1 out=$2 binary=$3 user=${4:-}
  local name dir layer_sha config config_sha
  name=$(basename "$binary")
  dir=$(mktemp -d "$work/image.XXXXXX")
  mkdir "$dir/root"
  install -m 0755 "$binary" "$dir/root/$name"
  # Only the file, no entry for "/" (whose mode would come from the temporary folder).
  local tar_flags=(--sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=gnu)
  tar "${tar_flags[@]}" -C "$dir/root" -cf "$dir/layer.tar" "$name"
  layer_sha=$(sha256sum "$dir/layer.tar" | cut -d' ' -f1)
  mkdir "$dir/$layer_sha"
  mv "$dir/layer.tar" "$dir/$layer_sha/layer.tar"
  config='{"architecture":"'"$arch"'","config":{"Entrypoint":["/'"$name"'"]'
  [ -z "$user" ] || config+=',"User":"'"$user"'"'
  config+='},"created":"1970-01-01T00:00:00Z","history":[{"created":"1970-01-01T00:00:00Z",'
  config+='"created_by":"tests/env/node/build.sh"}],"os":"linux",'
  config+='"rootfs":{"diff_ids":["sha256:'"$layer_sha"'"],"type":"layers"}}'
  printf '%s' "$config" >"$dir/config.json"
  config_sha=$(sha256sum "$dir/config.json" | cut -d' ' -f1)
  mv "$dir/config.json" "$dir/$config_sha.json"
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]' \
    "$config_sha" "$tag" "$layer_sha" >"$dir/manifest.json"
  tar "${tar_flags[@]}" -C "$dir" -cf "$out" manifest.json "$config_sha.json" "$layer_sha/layer.tar"
}

make_images() {
  # The sandbox runs as upstream's pause image does, as 65535; pods choose their own user.
  docker_archive registry.k8s.io/pause:3.10.1 "$work/pause.tar" "$work/bin/pause" 65535:65535
  docker_archive tracing-lab.test/coredns:1.15.0 "$work/coredns.tar" "$work/bin/coredns"
  docker_archive tracing-lab.test/netcheck:1 "$work/netcheck.tar" "$work/bin/netcheck"
}

timed "CNI plugins" build_cni
timed "CoreDNS, pause and netcheck" build_programs
timed "images" make_images
run "$work/bin/coredns" -version

for p in "${cni_plugins[@]}"; do mv -f "$work/cni/$p" "$assets/cni/$p"; done
for i in "${images[@]}"; do mv -f "$work/$i.tar" "$assets/node-images/$i.tar"; done
echo "$sources" >"$stamp"
summary=$(printf '%s; ' "${times[@]}")
echo "node: built ${summary%; } ($((SECONDS - start))s in all)" >&2
