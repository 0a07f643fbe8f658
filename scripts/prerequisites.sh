#!/bin/sh
# Checks what `make lab` needs on this machine, and names what to do about anything missing or too
# old. POSIX sh: it runs as `make prerequisites` runs it, on macOS's bash 3.2 and Debian's dash alike.
#   usage: scripts/prerequisites.sh
set -u
# kind v0.31.0 made the node image kind-config.yaml pins (Kubernetes 1.35); kubectl works within
# one minor version of the cluster; the chart is tested with helm 3 and 4.
KIND_MIN=0.31.0
KUBECTL_MIN=1.34.0
HELM_MIN=3.8.0
# One lab requests 950m CPU and 1504 MiB with its load generator, kind and the operator about
# 1 CPU and 354 MiB more (README, "Run the lab").
CPUS_MIN=2
MEMORY_MIN_MIB=4096

problems=0
problem() {
  echo "$*" >&2
  problems=$((problems + 1))
}

# at_least HAVE NEED: whether version HAVE (a leading v and any suffix ignored) is NEED or newer.
at_least() {
  have=$(echo "$1" | sed 's/^v//; s/[^0-9.].*$//')
  need=$2
  old_ifs=$IFS
  IFS=.
  # shellcheck disable=SC2086 # split on dots on purpose
  set -- $have
  h1=${1:-0} h2=${2:-0} h3=${3:-0}
  # shellcheck disable=SC2086
  set -- $need
  IFS=$old_ifs
  [ "$h1" -ne "$1" ] && { [ "$h1" -gt "$1" ]; return; }
  [ "$h2" -ne "$2" ] && { [ "$h2" -gt "$2" ]; return; }
  [ "$h3" -ge "$3" ]
}

# found TOOL URL: whether TOOL is on PATH; a problem naming where to get it if not.
found() {
  command -v "$1" >/dev/null 2>&1 && return 0
  problem "missing: $1 (install: $2)"
  return 1
}

if found docker https://docs.docker.com/engine/install/; then
  if resources=$(docker info --format '{{.NCPU}} {{.MemTotal}}' 2>/dev/null); then
    cpus=${resources%% *}
    mib=$((${resources#* } / 1048576))
    [ "$cpus" -ge $CPUS_MIN ] || problem "docker: $cpus CPU; one lab needs $CPUS_MIN (4 for the heavy exercises): give Docker more (Docker Desktop: Settings > Resources)"
    [ "$mib" -ge $MEMORY_MIN_MIB ] || problem "docker: $mib MiB of memory; one lab needs $MEMORY_MIN_MIB (8192 for the heavy exercises): give Docker more (Docker Desktop: Settings > Resources)"
  else
    problem "docker: the daemon does not answer: start Docker, or give this user access to it"
  fi
fi
if found kind https://kind.sigs.k8s.io/docs/user/quick-start/#installation; then
  version=$(kind version 2>/dev/null | sed -n 's/^kind \(v[0-9.]*\).*/\1/p')
  at_least "${version:-0}" $KIND_MIN || problem "kind ${version:-of unknown version} is older than v$KIND_MIN, which kind-config.yaml's node image (Kubernetes 1.35) needs: upgrade it (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
fi
if found kubectl https://kubernetes.io/docs/tasks/tools/; then
  version=$(kubectl version --client 2>/dev/null | sed -n 's/^Client Version: \(v[0-9.]*\).*/\1/p')
  at_least "${version:-0}" $KUBECTL_MIN || problem "kubectl ${version:-of unknown version} is older than v$KUBECTL_MIN, too old for the cluster's Kubernetes 1.35: upgrade it (https://kubernetes.io/docs/tasks/tools/)"
fi
if found helm https://helm.sh/docs/intro/install/; then
  version=$(helm version --template '{{.Version}}' 2>/dev/null)
  at_least "${version:-0}" $HELM_MIN || problem "helm ${version:-of unknown version} is older than v$HELM_MIN: upgrade it (https://helm.sh/docs/intro/install/)"
fi
if [ $problems -gt 0 ]; then
  echo "make lab needs what is named above" >&2
  exit 1
fi
echo "prerequisites: docker, kind, kubectl and helm found and recent enough"
