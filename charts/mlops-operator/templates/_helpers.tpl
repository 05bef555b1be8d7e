{{/* Names, labels and the small decisions several templates share. */}}

{{- define "mlops-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mlops-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Cluster-scoped objects carry the namespace too, so two releases of the same name never collide. */}}
{{- define "mlops-operator.clusterName" -}}
{{- printf "%s-%s" (include "mlops-operator.fullname" .) .Release.Namespace | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mlops-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mlops-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mlops-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "mlops-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: mlops-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "mlops-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mlops-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository[:tag|@digest] */}}
{{- define "mlops-operator.imageRef" -}}
{{- $image := index . 0 }}{{- $appVersion := index . 1 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default $appVersion $image.tag) }}
{{- end }}
{{- end }}

{{/* "true" when kopf peering is on: explicitly, or by default with more than one replica. */}}
{{- define "mlops-operator.peering" -}}
{{- if eq (toString .Values.peering.enabled) "<nil>" }}
{{- if gt (int .Values.replicas) 1 }}true{{ end }}
{{- else if .Values.peering.enabled }}true
{{- end }}
{{- end }}

{{- define "mlops-operator.peeringName" -}}
{{- default (include "mlops-operator.fullname" .) .Values.peering.name }}
{{- end }}

{{/* The namespaces of Roles, as a JSON list, or "" when the operator watches the whole cluster. */}}
{{- define "mlops-operator.watchNamespaces" -}}
{{- if eq .Values.watch.scope "namespaces" }}
{{- if not .Values.watch.namespaces }}{{ fail "watch.namespaces must list at least one namespace when watch.scope is namespaces" }}{{ end }}
{{- toJson .Values.watch.namespaces }}
{{- else if eq .Values.watch.scope "release" }}
{{- list .Release.Namespace | toJson }}
{{- end }}
{{- end }}

{{/* Whether the cluster serves the Prometheus Operator's API (or the user forces rendering). */}}
{{- define "mlops-operator.hasMonitoring" -}}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" }}true{{ end }}
{{- end }}
