#!/bin/sh
# Prepares a class on the current kubectl context: per student a namespace, a ServiceAccount whose
# Role allows every workshop command in that namespace and nothing elsewhere, a ResourceQuota and a
# LimitRange sized to one lab, and a kubeconfig that uses that account in that namespace.
# POSIX sh: it runs as `make class` runs it, on macOS's bash 3.2 and Debian's dash alike.
#   usage: scripts/class.sh COUNT [PREFIX] [FOLDER]
#   COUNT students, namespaces PREFIX1..PREFIXCOUNT (default "student-"); kubeconfigs are written to
#   FOLDER (default "class") as PREFIXN.kubeconfig. Run it again to add students or renew tokens.
# Environment: SERVER, the API server address students reach (default: the current context's, which
# for kind is 127.0.0.1 and works on this machine only); TOKEN_HOURS, how long the kubeconfigs
# work (default 12).
set -eu
count=${1:?usage: class.sh COUNT [PREFIX] [FOLDER]}
prefix=${2:-student-}
folder=${3:-class}
hours=${TOKEN_HOURS:-12}
case $count in '' | *[!0-9]* | 0) echo "class.sh: COUNT must be a number of students, 1 or more, not \"$count\"" >&2; exit 1 ;; esac

server=${SERVER:-$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')}
ca=$(kubectl config view --minify --flatten -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
mkdir -p "$folder"

i=1
while [ "$i" -le "$count" ]; do
  ns="$prefix$i"
  # The quota holds one lab of any example, with Exercise 6's 8 processing pods, but not two labs:
  # a lab requests 1000m CPU and 1056 MiB with its load generator, severe-workloads.yaml 1632 MiB.
  kubectl apply --server-side --field-manager=tracing-lab-class -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: $ns
  labels: {app.kubernetes.io/part-of: tracing-lab, tracinglab.dev/class: "true"}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: student, namespace: $ns}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: workshop-student, namespace: $ns}
rules:
  - apiGroups: [tracinglab.dev]
    resources: [tracinglabs]
    verbs: [get, list, watch, create, update, patch, delete]
  - apiGroups: [tracinglab.dev]
    resources: [tracinglabs/status]
    verbs: [get]
  - apiGroups: [apps]
    resources: [deployments, statefulsets, replicasets]
    verbs: [get, list, watch]
  - apiGroups: [apps]
    resources: [deployments/scale, statefulsets/scale]
    verbs: [get, update, patch]
  - apiGroups: [""]
    resources: [pods, services, endpoints, configmaps, persistentvolumeclaims, events, resourcequotas, limitranges]
    verbs: [get, list, watch]
  - apiGroups: [""]
    resources: [pods]
    verbs: [delete]
  - apiGroups: [""]
    resources: [pods/log, services/proxy]
    verbs: [get]
  - apiGroups: [""]
    resources: [pods/exec, pods/portforward]
    verbs: [get, create]
  - apiGroups: [events.k8s.io]
    resources: [events]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: workshop-student, namespace: $ns}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: workshop-student}
subjects:
  - {kind: ServiceAccount, name: student, namespace: $ns}
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: one-lab, namespace: $ns}
spec:
  hard:
    requests.cpu: "2"
    requests.memory: 1792Mi
    pods: "20"
    persistentvolumeclaims: "1"
    services.nodeports: "0"
---
apiVersion: v1
kind: LimitRange
metadata: {name: one-lab, namespace: $ns}
spec:
  limits:
    - type: Container
      defaultRequest: {cpu: 50m, memory: 32Mi}
      default: {cpu: 500m, memory: 256Mi}
EOF
  token=$(kubectl create token student --namespace "$ns" --duration "${hours}h")
  file="$folder/$ns.kubeconfig"
  umask 077
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: workshop
    cluster: {server: "$server", certificate-authority-data: "$ca"}
users:
  - name: $ns
    user: {token: "$token"}
contexts:
  - name: $ns
    context: {cluster: workshop, user: $ns, namespace: $ns}
current-context: $ns
EOF
  echo "$ns: $file"
  i=$((i + 1))
done
