{{/*
The operator's permissions, verb by verb. Each rule names who needs it; nothing is a wildcard,
no Secret is readable, and nothing cluster-scoped is writable.
*/}}

{{/* Rules in every namespace the operator watches (a ClusterRole, or a Role per namespace). */}}
{{- define "mlops-operator.namespacedRules" -}}
# kopf: list/watch the five kinds; merge-patch their metadata (finalizers, mlops.dev/ progress annotations).
- apiGroups: ["mlops.dev"]
  resources: ["datasets", "trainingjobs", "hyperparametersweeps", "modeldeployments", "models"]
  verbs: ["get", "list", "watch", "patch"]
# Sweeps server-side-apply their trials (TrainingJobs) and promote into ModelDeployments; drift retraining
# applies TrainingJobs; a retraining run (spec.retrain) its challenger, a TrainingJob or a sweep, and
# then patches the Dataset's mlops.dev/refresh and applies the Model's alias annotation (patch, above).
# Apply of a new object needs create. A sweep that is done (goal reached, budget spent) deletes its
# unfinished trials; retraining deletes the challengers of runs that fall off its history.
- apiGroups: ["mlops.dev"]
  resources: ["trainingjobs", "hyperparametersweeps", "modeldeployments"]
  verbs: ["create"]
- apiGroups: ["mlops.dev"]
  resources: ["trainingjobs", "hyperparametersweeps"]
  verbs: ["delete"]
# Status is written with server-side apply on the status subresource.
- apiGroups: ["mlops.dev"]
  resources: ["datasets/status", "trainingjobs/status", "hyperparametersweeps/status", "modeldeployments/status", "models/status"]
  verbs: ["get", "patch"]
# Children carry ownerReferences with blockOwnerDeletion, which OwnerReferencesPermissionEnforcement
# (on in OpenShift and hardened clusters) allows only with update on the owner's finalizers.
- apiGroups: ["mlops.dev"]
  resources: ["datasets/finalizers", "trainingjobs/finalizers", "hyperparametersweeps/finalizers", "modeldeployments/finalizers", "models/finalizers"]
  verbs: ["update"]
# Dataset preparation, training runs and retraining evaluations: applied, watched, removed after
# ttlSecondsAfterFinished.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Job outcomes (OOMKilled, ImagePullBackOff, termination messages) and serving readiness come from pods.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# Workload configs (mounted JSON), removed with their Job; a Model's version records (<model>-v<n>,
# immutable, never deleted by the operator: they go with their Model). Like every child, read
# from the operator's watch-fed cache of those labelled managed-by mlops-operator.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Model serving: the Deployment(s), the Service, the PodDisruptionBudget and the HPA of a ModelDeployment;
# the rendezvous Service of a several-worker TrainingJob (deleted with the run's other children).
# PDBs and HPAs are deleted when replicas or autoscaling change so that they stop acting; a
# canary's Deployment when it is rolled back or promoted.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "create", "patch", "delete"]
# Why a Kueue-queued run waits (quota, preemption, an inadmissible queue): the Job's Workload, read
# only while the Job is suspended in a queue. Read-only; absent Kueue CRDs are no error.
- apiGroups: ["kueue.x-k8s.io"]
  resources: ["workloads"]
  verbs: ["list"]
# Events for kubectl describe (the operator's and kopf's).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/* Rules that only exist cluster-wide, whatever the watch scope. */}}
{{- define "mlops-operator.clusterRules" -}}
# kopf discovers the watched kinds (and notices CRD changes) from the CRDs.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
# kopf resolves namespace patterns and follows namespaces appearing and going.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}

{{/* kopf's peering objects, where peering is on. */}}
{{- define "mlops-operator.peeringRules" -}}
- apiGroups: ["kopf.dev"]
  resources: [{{ . | quote }}]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
