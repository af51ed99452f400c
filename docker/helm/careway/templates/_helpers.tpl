{{/* Names and labels shared by every object of the release. */}}
{{- define "careway.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "careway.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "careway.labels" -}}
{{ include "careway.commonLabels" . }}
app.kubernetes.io/name: {{ include "careway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The labels besides name and instance (pod templates add those with their selector labels). */}}
{{- define "careway.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one role's pods: call with (dict "root" $ "role" "api"). */}}
{{- define "careway.selector" -}}
app.kubernetes.io/name: {{ include "careway.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{- define "careway.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "careway.secretName" -}}
{{- default (printf "%s-secrets" (include "careway.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "careway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "careway.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The FHIR server Careway uses: config.FHIR_BASE_URL, else the bundled HAPI. */}}
{{- define "careway.fhirBaseUrl" -}}
{{- if .Values.config.FHIR_BASE_URL -}}
{{- .Values.config.FHIR_BASE_URL -}}
{{- else if .Values.hapi.enabled -}}
{{- printf "http://%s-hapi:8080/fhir" (include "careway.fullname" .) -}}
{{- else -}}
{{- fail "set config.FHIR_BASE_URL (the hospital's FHIR server) or hapi.enabled=true" -}}
{{- end -}}
{{- end -}}

{{- define "careway.pgSecretName" -}}
{{- default (printf "%s-postgresql" (include "careway.fullname" .)) .Values.postgresql.existingSecret -}}
{{- end -}}
