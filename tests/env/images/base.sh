#!/usr/bin/env bash
# The base images the project's Dockerfile names, made here because no registry can be reached:
#   debian:bookworm-slim  a minimal Debian 12 root filesystem from debootstrap, imported, trusting
#                         the certificate authorities this machine adds to Debian's (its HTTPS
#                         egress may re-sign what it forwards), so builds reach crates.io as the host does;
#   rust:R-bookworm       that, with the C toolchain of buildpack-deps and this machine's Rust
#                         toolchain (R = its major.minor), laid out as the official image does
#                         (RUSTUP_HOME=/usr/local/rustup, CARGO_HOME=/usr/local/cargo on PATH).
# Both are made once; the engine's data-root keeps them.
# Usage: cache=DIR DOCKER_HOST=... bash tests/env/images/base.sh
set -euo pipefail
: "${cache:?set cache to the cache folder}"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
log() { echo "images: $*" >&2; }
exists() { docker image inspect "$1" >/dev/null 2>&1; }

if ! exists debian:bookworm-slim; then
  log "making debian:bookworm-slim with debootstrap (first run only)"
  root=$(mktemp -d "$cache/debootstrap.XXXXXX"); out="$root.log"
  trap 'rm -rf "$root" "$out"' EXIT
  # debootstrap's default mirror, as apt on the machine would use it.
  if ! debootstrap --variant=minbase bookworm "$root" >"$out" 2>&1; then
    tail -n 30 "$out" >&2; log "FAILED: debootstrap"; exit 1
  fi
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  # update-ca-certificates (run when a build installs ca-certificates) adds these to the bundle.
  mkdir -p "$root/usr/local/share/ca-certificates" "$root/etc/ssl/certs"
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  tar -C "$root" -c . | docker import --change 'CMD ["bash"]' - debian:bookworm-slim >/dev/null
  rm -rf "$root" "$out"
  trap - EXIT
fi

sysroot=$(rustc --print sysroot)
rust_version=$(rustc --version | sed -n 's/^rustc \([0-9]*\.[0-9]*\)\.\([0-9]*\).*/\1.\2/p')
rust_tag="rust:${rust_version%.*}-bookworm"
if ! exists "$rust_tag"; then
  log "making $rust_tag from this machine's Rust $rust_version (first run only)"
  context=$(mktemp -d "$cache/rust-image.XXXXXX")
  trap 'rm -rf "$context"' EXIT
  # The toolchain without its documentation.
  mkdir "$context/toolchain"
  cp -a "$sysroot/bin" "$sysroot/lib" "$sysroot/libexec" "$sysroot/etc" "$context/toolchain/"
  out=$(mktemp)
  if ! docker build ${DOCKER_BUILD_FLAGS:-} --build-arg RUST_VERSION="$rust_version" -t "$rust_tag" \
      -f "$here/rust/Dockerfile" "$context" >"$out" 2>&1; then
    tail -n 30 "$out" >&2; rm -f "$out"; log "FAILED: $rust_tag"; exit 1
  fi
  rm -rf "$out" "$context"
  trap - EXIT
fi
