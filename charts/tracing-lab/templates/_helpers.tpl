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

{{/* Rules of the operator's (Cluster)Role: what the reconciler reads, applies, prunes and reports. */}}
{{- define "tracing-lab.rbacRules" -}}
- apiGroups: ["tracinglab.dev"]
  resources: ["tracinglabs"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["tracinglab.dev"]
  resources: ["tracinglabs/status"]
  verbs: ["get", "patch", "update"]
# Owner references with blockOwnerDeletion need this where the OwnerReferencesPermissionEnforcement
# admission plugin is on (OpenShift, hardened clusters).
- apiGroups: ["tracinglab.dev"]
  resources: ["tracinglabs/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
