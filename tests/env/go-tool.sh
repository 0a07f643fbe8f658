#!/usr/bin/env bash
# Builds a Go program pinned as a tool dependency in a go.mod/go.sum folder into $assets.
# Usage: cache=DIR assets=DIR bash tests/env/go-tool.sh NAME FOLDER PACKAGE TAGS LDFLAGS VERSION-ARG
#   NAME the binary's name in $assets (and in the log); FOLDER holds the go.mod pinning PACKAGE;
#   TAGS and LDFLAGS as `go build` takes them (either may be empty); VERSION-ARG the argument the
#   built program must answer to (`version`, `--version`) before it replaces anything.
# Modules come from the machine's Go module proxy into $cache/go/mod, compiled packages go to
# $cache/go/build; a run with the binary present does nothing.
set -euo pipefail
: "${cache:?set cache to the cache folder}" "${assets:?set assets to the binaries folder}"
name=$1 folder=$2 pkg=$3 tags=$4 ldflags=$5 version_arg=$6
[ -x "$assets/$name" ] && exit 0

export GOTOOLCHAIN=local GOWORK=off GOMODCACHE="$cache/go/mod" GOCACHE="$cache/go/build" CGO_ENABLED=0
mkdir -p "$assets" "$cache"
log=$(mktemp "$cache/$name-build.XXXXXX.log")
tmp="$assets/.$name.tmp.$$"
trap 'rm -f "$log" "$tmp"' EXIT
echo "$name: building $pkg (first run only, a few minutes)" >&2

# -mod=readonly (the default) builds exactly what go.sum pins and never edits the files there.
if ! (cd "$folder" && go build -mod=readonly -trimpath -tags "$tags" -ldflags="$ldflags" -o "$tmp" "$pkg") \
       >"$log" 2>&1 \
   || ! "$tmp" "$version_arg" >>"$log" 2>&1; then
  tail -n 40 "$log" >&2
  echo "$name: FAILED, see the lines above" >&2
  exit 1
fi
mv "$tmp" "$assets/$name"
