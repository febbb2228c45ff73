{{/* Names. */}}
{{- define "signalbox.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "signalbox.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Common labels; pass (dict "root" $ "component" "edge"). */}}
{{- define "signalbox.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{ include "signalbox.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: signalbox
{{- end -}}

{{- define "signalbox.selectorLabels" -}}
app.kubernetes.io/name: {{ include "signalbox.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "signalbox.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "signalbox.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "signalbox.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the database URL, the admin token and the master key. */}}
{{- define "signalbox.secretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else -}}
{{- printf "%s-secrets" (include "signalbox.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The NATS URL every role connects to. The schema makes sure one of the two is set. */}}
{{- define "signalbox.natsUrl" -}}
{{- if .Values.nats.internal.enabled -}}
{{- printf "nats://%s-nats:4222" (include "signalbox.fullname" .) -}}
{{- else -}}
{{- required "nats.url is required unless nats.internal.enabled is true" .Values.nats.url -}}
{{- end -}}
{{- end -}}

{{/* The edge's pod grace period: long enough for the preStop sleep, the paced drain, the
     edge's 5 s close grace and a margin; an explicit value wins. */}}
{{- define "signalbox.edgeGracePeriod" -}}
{{- if gt (int .Values.edge.terminationGracePeriodSeconds) 0 -}}
{{- .Values.edge.terminationGracePeriodSeconds -}}
{{- else -}}
{{- add .Values.edge.drain.preStopSleepSeconds .Values.edge.drain.seconds 5 5 -}}
{{- end -}}
{{- end -}}

{{/* An environment variable from the Secret. */}}
{{- define "signalbox.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "signalbox.secretName" .root }}
      key: {{ .key }}
{{- end -}}

{{/* Topology spread for a component; pass (dict "root" $ "component" "edge" "spread" .Values.edge.topologySpread). */}}
{{- define "signalbox.topologySpread" -}}
{{- if .spread.enabled }}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: {{ .spread.zoneWhenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "signalbox.selectorLabels" . | nindent 8 }}
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: {{ .spread.hostnameWhenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "signalbox.selectorLabels" . | nindent 8 }}
{{- end }}
{{- end -}}

{{/* Scheduling fields shared by the pod specs; pass the component's values. */}}
{{- define "signalbox.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
