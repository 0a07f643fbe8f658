#!/usr/bin/env bash
# Builds Jaeger v2 (the `jaeger` binary, an OpenTelemetry Collector distribution) into $assets/jaeger,
# from the tool dependency pinned in go.mod/go.sum next to this file.
# Usage: cache=DIR assets=DIR bash tests/env/jaeger/build.sh
# Modules come from the machine's Go module proxy into $cache/go/mod, compiled packages go to
# $cache/go/build; a run with the binary present does nothing.
set -euo pipefail
: "${cache:?set cache to the cache folder}" "${assets:?set assets to the binaries folder}"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# What `jaeger version` reports; Jaeger's own release build sets these three with -X.
# Keep them in step with the jaeger version in go.mod (v1.76.0 = v2.13.0, tagged 2025-12-03).
release=v2.13.0 commit=63b27e1810a710ac54dc4522da0538e540bdc545 date=2025-12-03T16:07:08Z
pkg=github.com/jaegertracing/jaeger
ldflags="-s -w -X $pkg/internal/version.latestVersion=$release"
ldflags+=" -X $pkg/internal/version.commitSHA=$commit -X $pkg/internal/version.date=$date"

exec bash "$here/../go-tool.sh" jaeger "$here" "$pkg/cmd/jaeger" "" "$ldflags" version
