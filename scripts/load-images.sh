#!/bin/sh
# Loads images into a cluster's node as archives, one image at a time, saved for the Docker
# engine's own platform (the node's). `kind load docker-image` fails on Docker's containerd image
# store (Docker Desktop, Docker Engine 29) for multi-platform images and images with attestations
# (kind issues 3795 and 4236); a one-platform archive loads everywhere.
#   usage: scripts/load-images.sh LOADER IMAGE...
# LOADER is the command that takes one archive, e.g. "kind load image-archive --name tracing-lab"
# (on the node that is `ctr -n k8s.io images import`). Images not present locally are pulled first.
set -eu
loader=${1:?usage: load-images.sh LOADER IMAGE...}
shift
platform=$(docker version --format '{{.Server.Os}}/{{.Server.Arch}}')
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT INT TERM
for image in "$@"; do
  docker image inspect "$image" >/dev/null 2>&1 || docker pull --platform "$platform" "$image"
  archive="$dir/$(printf '%s' "$image" | tr '/:@' '___').tar"
  # `save --platform` needs Docker 28 (API 1.48); an older engine's store holds one platform anyway.
  if ! docker image save --platform "$platform" --output "$archive" "$image" 2>"$dir/error"; then
    docker image save --output "$archive" "$image" || { cat "$dir/error" >&2; exit 1; }
  fi
  echo "loading $image ($platform)"
  # The loader is a command line: split into words on purpose.
  # shellcheck disable=SC2086
  $loader "$archive"
  rm -f "$archive"
done
