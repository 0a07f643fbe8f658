#!/usr/bin/env bash
# Builds the Prometheus server (the `prometheus` binary) into $assets/prometheus, from the tool
# dependency pinned in go.mod/go.sum next to this file. The tests use it as the metrics store that
# the Collector's spanmetrics connector writes to (its OTLP receiver) and Jaeger's Monitor tab reads.
# Usage: cache=DIR assets=DIR bash tests/env/prometheus/build.sh
# Modules come from the machine's Go module proxy into $cache/go/mod, compiled packages go to
# $cache/go/build; a run with the binary present does nothing.
set -euo pipefail
: "${cache:?set cache to the cache folder}" "${assets:?set assets to the binaries folder}"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# What `prometheus --version` reports; Prometheus's release build (promu) sets these with -X.
# Keep them in step with the prometheus version in go.mod (v0.316.0 = v3.16.0, published 2026-11-05).
# The module proxy does not say which commit the tag is, so Revision stays unset ("unknown").
release=3.16.0 date=20261105-15:06:51
pkg=github.com/prometheus/prometheus
ver=github.com/prometheus/common/version
ldflags="-s -w -X $ver.Version=$release -X $ver.Branch=HEAD"
ldflags+=" -X $ver.BuildUser=tracing-lab -X $ver.BuildDate=$date"
# netgo as upstream's release; remove_all_sd drops every service discovery but static, file and
# http (plugins/minimum.go): the tests push metrics to its OTLP receiver and scrape nothing.
# No builtinassets: the web UI's compiled assets are not in the module, so only the API is served.
tags=netgo,remove_all_sd

exec bash "$here/../go-tool.sh" prometheus "$here" "$pkg/cmd/prometheus" "$tags" "$ldflags" --version
