{{/* Chart name, honouring nameOverride. */}}
{{- define "flox-isa.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object name prefix: fullnameOverride, or "<release>-<name>" (just the release when it contains the name). Short enough for "-operator"/"-webhook" suffixes. */}}
{{- define "flox-isa.fullname" -}}
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

{{- define "flox-isa.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "flox-isa.labels" -}}
helm.sh/chart: {{ include "flox-isa.chart" . }}
{{ include "flox-isa.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: flox-isa
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "flox-isa.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flox-isa.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component: call with (dict "root" $ "component" "webhook"). */}}
{{- define "flox-isa.componentLabels" -}}
{{ include "flox-isa.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "flox-isa.componentSelectorLabels" -}}
{{ include "flox-isa.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "flox-isa.webhook.fullname" -}}
{{ include "flox-isa.fullname" . }}-webhook
{{- end }}

{{- define "flox-isa.operator.fullname" -}}
{{ include "flox-isa.fullname" . }}-operator
{{- end }}

{{- define "flox-isa.webhook.serviceAccountName" -}}
{{- if .Values.webhook.serviceAccount.create }}
{{- default (include "flox-isa.webhook.fullname" .) .Values.webhook.serviceAccount.name }}
{{- else }}
{{- required "webhook.serviceAccount.name is required when webhook.serviceAccount.create is false" .Values.webhook.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "flox-isa.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "flox-isa.operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "flox-isa.catalogName" -}}
{{ include "flox-isa.fullname" . }}-catalog
{{- end }}

{{/* The Secret holding the webhook's serving certificate (tls.crt, tls.key, ca.crt). */}}
{{- define "flox-isa.webhook.tlsSecretName" -}}
{{ include "flox-isa.webhook.fullname" . }}-tls
{{- end }}

{{- define "flox-isa.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* The catalog file, rendered from values (the ConfigMap's catalog.yaml). */}}
{{- define "flox-isa.catalogYaml" -}}
{{ toYaml (dict "variants" .Values.catalog.variants) }}
{{- end }}

{{/* Where both components read the catalog. */}}
{{- define "flox-isa.catalogDir" -}}
/etc/flox-isa/catalog
{{- end }}

{{/* DNS names of the webhook Service, for its serving certificate. */}}
{{- define "flox-isa.webhook.dnsNames" -}}
{{- $svc := include "flox-isa.webhook.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson }}
{{- end }}

{{/* Namespaces the webhook never mutates. */}}
{{- define "flox-isa.webhook.excludedNamespaces" -}}
{{- concat (list "kube-system" "kube-public" "kube-node-lease" .Release.Namespace) .Values.webhook.excludedNamespaces | uniq | toJson }}
{{- end }}

{{/* The operator's placement-controller and capacity-planning flags. */}}
{{- define "flox-isa.operator.placementArgs" -}}
{{- if .Values.placement.lateBinding }}
- --placement
- --when-full={{ .Values.placement.whenFull }}
{{- with .Values.placement.growableVariants }}
- --growable-variants={{ join "," . }}
{{- end }}
- --max-gate-age={{ .Values.placement.maxGateAge }}
- --placement-lease-duration={{ .Values.placement.leaseDuration }}
{{- if .Values.placement.recovery.enabled }}
- --recover-unschedulable-after={{ .Values.placement.recovery.unschedulableSeconds }}
{{- end }}
{{- else }}
- --no-placement
{{- end }}
{{- if not .Values.operator.capacityPlanning }}
- --no-capacity-planning
{{- end }}
{{- end }}

{{/* topologySpreadConstraints: entries without a labelSelector get the component's own.
     Call with (dict "constraints" LIST "selector" MATCHLABELS). */}}
{{- define "flox-isa.topologySpread" -}}
{{- $out := list }}
{{- range .constraints }}
{{- $c := deepCopy . }}
{{- if not (hasKey $c "labelSelector") }}
{{- $_ := set $c "labelSelector" (dict "matchLabels" $.selector) }}
{{- end }}
{{- $out = append $out $c }}
{{- end }}
{{- toYaml $out }}
{{- end }}
