{{/* Chart name, truncated to 63 characters (DNS label). */}}
{{- define "zenith.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release full name: <release>-zenith, or the release name when it already holds the chart's. */}}
{{- define "zenith.fullname" -}}
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

{{- define "zenith.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "zenith.selectorLabels" -}}
app.kubernetes.io/name: {{ include "zenith.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "zenith.labels" -}}
helm.sh/chart: {{ include "zenith.chart" . }}
{{ include "zenith.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "zenith.serverSelectorLabels" -}}
{{ include "zenith.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "zenith.agentSelectorLabels" -}}
{{ include "zenith.selectorLabels" . }}
app.kubernetes.io/component: agent
{{- end }}

{{- define "zenith.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "zenith.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "zenith.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "zenith.headlessName" -}}
{{- printf "%s-headless" (include "zenith.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The Secret with the admin and join tokens: the operator's, or the one the chart makes. */}}
{{- define "zenith.tokensSecretName" -}}
{{- default (printf "%s-tokens" (include "zenith.fullname" .)) .Values.tokens.existingSecret }}
{{- end }}

{{/* The Secret with the server's tls.crt, tls.key and ca.crt: the operator's (mode secret), or
the one the chart makes (mode auto). */}}
{{- define "zenith.tlsSecretName" -}}
{{- if eq .Values.server.tls.mode "secret" }}
{{- .Values.server.tls.secretName }}
{{- else }}
{{- printf "%s-tls" (include "zenith.fullname" .) }}
{{- end }}
{{- end }}

{{- define "zenith.scheme" -}}
{{- if eq .Values.server.tls.mode "none" }}http{{ else }}https{{ end }}
{{- end }}

{{/* The URL agents and in-cluster clients use: the Service's cluster DNS name. */}}
{{- define "zenith.serverUrl" -}}
{{- printf "%s://%s.%s.svc.%s:%d" (include "zenith.scheme" .) (include "zenith.fullname" .) .Release.Namespace .Values.clusterDomain (int .Values.server.port) }}
{{- end }}

{{/* Settings that cannot work together fail the render with a reason. */}}
{{- define "zenith.validate" -}}
{{- $mode := .Values.server.tls.mode }}
{{- if not (has $mode (list "auto" "secret" "none")) }}
{{- fail (printf "server.tls.mode must be auto, secret or none (got %q)" $mode) }}
{{- end }}
{{- if and (eq $mode "secret") (not .Values.server.tls.secretName) }}
{{- fail "server.tls.mode=secret needs server.tls.secretName (a Secret with tls.crt, tls.key and ca.crt)" }}
{{- end }}
{{- if lt (int .Values.server.replicas) 1 }}
{{- fail "server.replicas must be at least 1" }}
{{- end }}
{{- if gt (int .Values.server.replicas) 1 }}
{{- if not .Values.server.store.postgres.existingSecret }}
{{- fail "server.replicas > 1 needs server.store.postgres.existingSecret: the embedded store serves one server (docs/ha.md)" }}
{{- end }}
{{- end }}
{{- if eq .Values.tokens.adminKey .Values.tokens.joinKey }}
{{- fail "tokens.adminKey and tokens.joinKey must differ: agents would be given the admin token" }}
{{- end }}
{{- end }}
