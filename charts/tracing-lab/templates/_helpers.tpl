{{/* Chart name, overridable. */}}
{{- define "tracing-lab.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects: release name, plus the chart name unless it already holds it. */}}
{{- define "tracing-lab.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "tracing-lab.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object of the release carries. */}}
{{- define "tracing-lab.labels" -}}
helm.sh/chart: {{ include "tracing-lab.chart" . }}
{{ include "tracing-lab.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: tracing-lab
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the operator's pods; never change them after a release exists. */}}
{{- define "tracing-lab.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tracing-lab.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tracing-lab.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tracing-lab.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tracing-lab.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Rules of the operator's (Cluster)Role: exactly the calls it makes. Labs: watched (list, watch),
status written by server-side apply (patch). Children: server-side applied (create on first apply,
patch after), watched (list, watch) and pruned (delete). Events: events.k8s.io/v1, created and
patched when they repeat.
*/}}
{{- define "tracing-lab.rbacRules" -}}
- apiGroups: ["tracinglab.dev"]
  resources: ["tracinglabs"]
  verbs: ["list", "watch"]
- apiGroups: ["tracinglab.dev"]
  resources: ["tracinglabs/status"]
  verbs: ["patch"]
# Children carry owner references with blockOwnerDeletion, which clusters running the
# OwnerReferencesPermissionEnforcement admission plugin (OpenShift, hardened clusters) allow only
# to those who may update the owner's finalizers.
- apiGroups: ["tracinglab.dev"]
  resources: ["tracinglabs/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# Read only: why a component is not ready is in its pods' status and the Warning events on them.
- apiGroups: [""]
  resources: ["pods", "events"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
