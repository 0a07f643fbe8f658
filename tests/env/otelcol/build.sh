#!/usr/bin/env bash
# Builds the OpenTelemetry Collector the tests run (see builder-config.yaml) into $assets/otelcol.
# Usage: cache=DIR assets=DIR bash tests/env/otelcol/build.sh
# Modules come from the machine's Go module proxy into $cache/go/mod, compiled packages go to
# $cache/go/build, so a rebuild after `rm $assets/otelcol` takes about a minute, and a run with
# the binary built from the same manifest and go.sum does nothing.
set -euo pipefail
: "${cache:?set cache to the cache folder}" "${assets:?set assets to the binaries folder}"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
builder_version=v0.161.0 # same release as every module in builder-config.yaml
# The binary is rebuilt when the manifest or the lock changes (a component added, say).
stamp=$(cat "$here/builder-config.yaml" "$here/go.sum" | sha256sum | cut -d' ' -f1)
[ -x "$assets/otelcol" ] && [ "$(cat "$assets/.otelcol.inputs" 2>/dev/null)" = "$stamp" ] && exit 0

export GOTOOLCHAIN=local GOWORK=off GOMODCACHE="$cache/go/mod" GOCACHE="$cache/go/build"
mkdir -p "$assets" "$cache"
work=$(mktemp -d "$cache/otelcol-src.XXXXXX")
log="$work.log"
trap 'rm -rf "$work" "$log"' EXIT
echo "otelcol: building collector ${builder_version#v} (first run only, a few minutes)" >&2

# The builder writes go.mod from the manifest, then runs `go mod tidy` and `go build` with
# CGO_ENABLED=0 -trimpath -ldflags='-s -w'. The go.sum copied in first pins every module's hash,
# so a module that changed upstream fails the build instead of slipping in.
# TMPDIR: the builder makes a scratch folder in it even when output_path is set; keep it in $work.
cp "$here/builder-config.yaml" "$work/"
mkdir -p "$work/build" "$work/tmp"
cp "$here/go.sum" "$work/build/go.sum"
if ! (cd "$work" && TMPDIR="$work/tmp" CGO_ENABLED=0 \
        go run "go.opentelemetry.io/collector/cmd/builder@$builder_version" --config builder-config.yaml) >"$log" 2>&1 \
   || ! "$work/build/otelcol" --version >>"$log" 2>&1; then
  tail -n 40 "$log" >&2
  echo "otelcol: FAILED, see the lines above" >&2
  exit 1
fi
mv "$work/build/otelcol" "$assets/.otelcol.tmp.$$"
mv "$assets/.otelcol.tmp.$$" "$assets/otelcol"
echo "$stamp" >"$assets/.otelcol.inputs"
