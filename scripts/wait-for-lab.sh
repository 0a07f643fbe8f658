#!/bin/sh
# Waits until every TracingLab in a namespace is Ready, printing each lab's components (ready of
# wanted replicas) and its Ready message whenever they change, so a long first start (images,
# Kafka's storage format) shows where it is. Exits 1 with the last state after the timeout.
# POSIX sh: it runs as `make apply` runs it, on macOS's bash 3.2 and Debian's dash alike.
#   usage: scripts/wait-for-lab.sh NAMESPACE [TIMEOUT_SECONDS]
set -eu
namespace=${1:?usage: wait-for-lab.sh NAMESPACE [TIMEOUT_SECONDS]}
timeout=${2:-900}

# One line per lab: "lab: api 1/1 kafka 0/1 ... | Ready=False: waiting for kafka 0/1".
template='{{range .items}}{{.metadata.name}}:{{with .status}}{{range $name, $c := .components}} {{$name}} {{$c.ready}}/{{$c.desired}}{{end}}{{range .conditions}}{{if eq .type "Ready"}} | Ready={{.status}}: {{.message}}{{end}}{{end}}{{else}} no status yet{{end}}{{"\n"}}{{end}}'

deadline=$(($(date +%s) + timeout))
last=""
while true; do
  if ! state=$(kubectl get tlab --namespace "$namespace" -o go-template="$template" 2>&1); then
    state="kubectl: $state"
  fi
  if [ "$state" != "$last" ]; then
    printf '%s\n' "$state" | while IFS= read -r line; do printf '%s  %s\n' "$(date +%H:%M:%S)" "$line"; done
    last=$state
  fi
  if [ -n "$state" ] && ! printf '%s\n' "$state" | grep -qv '| Ready=True:'; then
    exit 0
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "not Ready within ${timeout} s; see: kubectl describe tlab --namespace $namespace" >&2
    exit 1
  fi
  sleep 2
done
