#!/usr/bin/env bash
# Builds etcd and the Kubernetes control plane and node binaries (kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, kube-proxy) from the Go module proxy, at the
# versions pinned in go.mod beside this script, into "$assets". Go's module and build caches live under "$cache/go", so a rebuild
# after a change of version reuses what it can and a run with every binary present takes < 1 s.
# Usage: cache=DIR assets=DIR bash tests/env/kube/build.sh
# Silent when the binaries are already there at the right versions; one line on stderr after a
# build; the tail of the build log on failure.
set -euo pipefail

: "${cache:?set cache to the cache folder}" "${assets:?set assets to the output folder}"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# Versions come from go.mod alone, so bumping them there (and `go mod tidy`) is the whole upgrade.
kube_version=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }' "$here/go.mod")
etcd_version=$(awk '$1 == "go.etcd.io/etcd/server/v3" && $2 ~ /^v/ { print $2; exit }' "$here/go.mod")
[[ $kube_version =~ ^v([0-9]+)\.([0-9]+)\. ]] || { echo "kube: no k8s.io/kubernetes version in go.mod" >&2; exit 1; }
kube_major=${BASH_REMATCH[1]} kube_minor=${BASH_REMATCH[2]}

# A binary counts as built only if it reports the pinned version: this also replaces binaries
# that an older setup left at the same paths (a Debian etcd symlink, a v1.20 kube-apiserver).
kube_commands=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
have() {
  case $1 in
    etcd) [ -x "$assets/etcd" ] &&
      [[ $("$assets/etcd" --version 2>/dev/null) == *"etcd Version: ${etcd_version#v}"* ]] ;;
    *) [ -x "$assets/$1" ] && [ "$("$assets/$1" --version 2>/dev/null)" = "Kubernetes $kube_version" ] ;;
  esac
}
missing=()
for command in "${kube_commands[@]}"; do have "$command" || missing+=("$command"); done
if [ ${#missing[@]} = 0 ] && have etcd; then exit 0; fi

mkdir -p "$assets" "$cache/go/mod" "$cache/go/build"
export GOTOOLCHAIN=local              # the machine's Go; go.mod needs >= 1.25
export GOMODCACHE="$cache/go/mod" GOCACHE="$cache/go/build"
export GOWORK=off CGO_ENABLED=0       # no workspace from a parent folder; static binaries
# readonly: go.mod/go.sum are the lock; modcacherw: the cache can be deleted with rm -rf;
# buildvcs=false: the binaries do not depend on the state of the project's git checkout.
export GOFLAGS="-mod=readonly -modcacherw -buildvcs=false"

log=$(mktemp)
tmp=()
trap 'rm -rf "$log" "${tmp[@]}"' EXIT
run() {
  if ! "$@" >>"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "kube: FAILED: $*" >&2
    exit 1
  fi
}
start=$SECONDS
cd "$here"

if [ ${#missing[@]} -gt 0 ]; then
  # The release date of the module, so /version's buildDate is the same on every machine.
  run go mod download k8s.io/kubernetes
  build_date=$(go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)
  ver=()
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do # as hack/lib/version.sh
    ver+=("-X $pkg.gitVersion=$kube_version" "-X $pkg.gitMajor=$kube_major" "-X $pkg.gitMinor=$kube_minor"
          "-X $pkg.gitTreeState=clean" "-X $pkg.buildDate=$build_date"
          "-X $pkg.gitCommit=") # the proxy has no commit id: empty, not the "$Format:%H$" placeholder
  done
  out=$(mktemp -d "$assets/.kube.tmp.XXXXXX"); tmp+=("$out")
  # One build for all of them, so their shared packages compile once. Tags as in upstream's
  # release builds (hack/lib/golang.sh).
  run go build -trimpath -tags selinux,notest,grpcnotrace -ldflags "-s -w ${ver[*]}" -o "$out/" \
    "${missing[@]/#/k8s.io/kubernetes/cmd/}"
  for command in "${missing[@]}"; do mv -f "$out/$command" "$assets/$command"; done
fi

if ! have etcd; then
  out="$assets/.etcd.tmp.$$"; tmp+=("$out")
  # etcd's own release build sets only GitSHA; the module proxy has no commit id, so it gets the tag.
  run go build -trimpath -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$etcd_version" -o "$out" \
    go.etcd.io/etcd/server/v3
  mv -f "$out" "$assets/etcd"
fi

for command in etcd "${kube_commands[@]}"; do
  have "$command" || { echo "kube: built $command does not report $kube_version / $etcd_version" >&2; exit 1; }
done
echo "kube: built ${missing[*]} $kube_version and etcd $etcd_version in $((SECONDS - start))s" >&2
