{{/* Resource names and labels. */}}
{{- define "fedkey.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "fedkey.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "fedkey.labels" -}}
{{ include "fedkey.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Refuses combinations that cannot work. */}}
{{- define "fedkey.validate" -}}
{{- if not (has .Values.database.kind (list "sqlite" "postgres")) -}}
{{- fail "database.kind must be sqlite or postgres" -}}
{{- end -}}
{{- if and (eq .Values.database.kind "sqlite") (gt (int .Values.replicaCount) 1) -}}
{{- fail "database.kind=sqlite serves one node: set replicaCount=1, or use database.kind=postgres for several" -}}
{{- end -}}
{{- if and (eq .Values.database.kind "postgres") (not .Values.database.postgres.existingSecret) -}}
{{- fail "database.kind=postgres needs database.postgres.existingSecret (a Secret holding the connection URL)" -}}
{{- end -}}
{{- if not .Values.masterKey.existingSecret -}}
{{- fail "masterKey.existingSecret is required: the Secret holding the master keyring file" -}}
{{- end -}}
{{- if and (not .Values.tls.secretName) (not .Values.insecureHttp) -}}
{{- fail "set tls.secretName, or insecureHttp=true when TLS is terminated in front of fedkey" -}}
{{- end -}}
{{- end -}}

{{- define "fedkey.scheme" -}}
{{- if .Values.tls.secretName }}HTTPS{{ else }}HTTP{{ end -}}
{{- end -}}
