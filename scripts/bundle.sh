#!/bin/sh
# Saves images into one archive for a cluster's node, for the Docker engine's own platform (the
# node's). `kind load docker-image` fails on Docker's containerd image store (Docker Desktop,
# Docker Engine 29) for multi-platform images and images with attestations (kind issues 3795 and
# 4236); a one-platform archive loads everywhere: `kind load image-archive ARCHIVE` (on the node,
# `ctr -n k8s.io images import`). Images not present locally are pulled first.
#   usage: scripts/bundle.sh ARCHIVE IMAGE...
set -eu
usage="usage: scripts/bundle.sh ARCHIVE IMAGE..."
archive=${1:?$usage}
shift
[ "$#" -gt 0 ] || { echo "$usage" >&2; exit 2; }
platform=$(docker version --format '{{.Server.Os}}/{{.Server.Arch}}')
for image in "$@"; do
  docker image inspect "$image" >/dev/null 2>&1 || docker pull --platform "$platform" "$image"
done
partial="$archive.partial"
error=$(mktemp)
trap 'rm -f "$partial" "$error"' EXIT INT TERM
# `save --platform` needs Docker 28 (API 1.48); an older engine's store holds one platform anyway.
if ! docker image save --platform "$platform" --output "$partial" "$@" 2>"$error"; then
  docker image save --output "$partial" "$@" || { cat "$error" >&2; exit 1; }
fi
mv "$partial" "$archive"
echo "saved $# images ($platform) into $archive"
