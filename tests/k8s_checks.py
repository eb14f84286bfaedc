"""Offline rendering and checking of the Kubernetes manifests in ``k8s/`` (used by ``tests/test_k8s.py``).

Three parts, all offline and fast:

1. ``render``: the subset of kustomize that ``k8s/`` uses (``resources``, ``namespace``, ``labels``/``commonLabels``,
   ``commonAnnotations``, ``images``, ``patches`` as strategic merge patches incl. ``$patch: delete``). Anything else
   in a kustomization raises ``KustomizeError`` instead of being ignored. The order of transformers and of merged
   list items follows kustomize 5 (``kubectl kustomize``); a test compares both where kubectl is installed.
2. Schema validation: built-in kinds strictly against the Kubernetes OpenAPI schemas bundled by
   ``kubernetes-validate`` (unknown fields fail); KEDA's ScaledObject against ``k8s/schemas/scaledobject.json``.
3. Semantic checks no schema catches. Each ``check_*`` returns a list of problems, one readable sentence each
   naming the resource (``Deployment/worker: ...``); an empty list means the manifests are fine.

Plus a small Dockerfile parser and its checks.
"""

from __future__ import annotations

import base64
import copy
import json
import math
import re
import shlex
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import yaml
from kubernetes_validate import utils as kv_utils

Resource = dict[str, Any]

ROOT = Path(__file__).resolve().parent.parent
K8S_DIR = ROOT / "k8s"
OVERLAYS = ("dev", "prod")
SCALEDOBJECT_SCHEMA = K8S_DIR / "schemas" / "scaledobject.json"
SECRET_TEMPLATE = K8S_DIR / "base" / "secret.template.yaml"

OLDEST_KUBERNETES = "1.28"
"""The oldest minor we claim to support; the newest is the newest that kubernetes-validate bundles."""

# Names the manifests and the checks agree on.
WORKER = "worker"
WORKER_CONTAINER = "worker"
REDIS = "redis"
CONFIGMAP = "extract-config"
SECRET = "openai-api-key"
METRICS_PORT_NAME = "metrics"
DUE_JOBS_METRIC = "extract_queue_due_jobs"
UNSET_ANNOTATION = "structured-extract/unset-settings"
SIZING_PREFIX = "structured-extract/sizing-"

GRACE_MARGIN_S = 15
"""terminationGracePeriodSeconds must exceed the drain (EXTRACT_JOB_COMPLETION_WAIT_S) by at least this: after the
drain, arq cancels and re-queues what is left and closes its pools before the kubelet's SIGKILL."""
MIN_SCALE_DOWN_STABILIZATION_S = 300
REDIS_MAXMEMORY_SHARE = 0.75
"""Redis' maxmemory at most this share of its container's memory limit (the fork of an AOF rewrite needs room)."""
TMP = "/tmp"  # noqa: S108 - the mount path the checks look for, not a file anything writes
REAL_LOOKING_KEY = re.compile(r"sk-[A-Za-z0-9_\-]{20,}")


class KustomizeError(Exception):
    """A kustomization uses something this renderer does not implement, or a patch matches nothing."""


# ---------------------------------------------------------------------------------------------------------------------
# Rendering: a kustomize subset
# ---------------------------------------------------------------------------------------------------------------------

_SUPPORTED_KEYS = frozenset(
    {"apiVersion", "kind", "resources", "namespace", "labels", "commonLabels", "commonAnnotations", "images", "patches"}
)
_CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PersistentVolume",
        "PriorityClass",
        "StorageClass",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    }
)
_BUILTIN_API_GROUPS = frozenset(
    {"", "apps", "batch", "policy", "networking.k8s.io", "autoscaling", "rbac.authorization.k8s.io"}
)
# patchMergeKey of the lists our strategic merge patches may touch (from the Kubernetes API types).
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
}
_SERVICE_PORTS_KEY = "port"
_CONTAINER_PORTS_KEY = "containerPort"


def load_yaml_documents(text: str) -> list[Resource]:
    """Every non-empty document of a YAML stream."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render(directory: Path) -> list[Resource]:
    """Build the kustomization in ``directory`` like ``kubectl kustomize directory`` (the subset ``k8s/`` uses)."""
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise KustomizeError(f"{directory}: no kustomization.yaml")
    kust = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unsupported = set(kust) - _SUPPORTED_KEYS
    if unsupported:
        raise KustomizeError(f"{path}: unsupported kustomization fields {sorted(unsupported)}")

    resources: list[Resource] = []
    for entry in kust.get("resources", []):
        target = (directory / entry).resolve()
        if target.is_dir():
            resources.extend(render(target))
        else:
            resources.extend(load_yaml_documents(target.read_text(encoding="utf-8")))

    # kustomize 5: patches, then namespace, labels, annotations, images.
    for patch in kust.get("patches", []):
        resources = _apply_patch_entry(resources, directory, patch)
    if "namespace" in kust:
        _set_namespace(resources, kust["namespace"])
    if "commonLabels" in kust:
        _add_labels(resources, kust["commonLabels"], selectors=True, templates=True)
    for entry in kust.get("labels", []):
        include_selectors = bool(entry.get("includeSelectors", False))
        include_templates = bool(entry.get("includeTemplates", False)) or include_selectors
        _add_labels(resources, entry["pairs"], selectors=include_selectors, templates=include_templates)
    if "commonAnnotations" in kust:
        _add_annotations(resources, kust["commonAnnotations"])
    for image in kust.get("images", []):
        _set_image(resources, image)
    return resources


def resource_id(resource: Resource) -> str:
    return f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')}"


def _apply_patch_entry(resources: list[Resource], directory: Path, entry: Mapping[str, Any]) -> list[Resource]:
    if set(entry) - {"path", "patch"}:
        raise KustomizeError(f"{directory}: patch options {sorted(set(entry) - {'path', 'patch'})} not supported")
    text = (directory / entry["path"]).read_text(encoding="utf-8") if "path" in entry else entry["patch"]
    for patch in load_yaml_documents(text):
        if isinstance(patch, list) or "op" in patch:
            raise KustomizeError(f"{directory}: JSON 6902 patches are not supported")
        kind, name = patch.get("kind"), patch.get("metadata", {}).get("name")
        namespace = patch.get("metadata", {}).get("namespace")
        matches = [
            r
            for r in resources
            if r.get("kind") == kind
            and r["metadata"].get("name") == name
            and (namespace is None or r["metadata"].get("namespace") == namespace)
        ]
        if not matches:
            raise KustomizeError(f"{directory}: patch for {kind}/{name} matches no resource")
        if patch.get("$patch") == "delete":
            resources = [r for r in resources if not any(r is m for m in matches)]
            continue
        builtin = _is_builtin(patch)
        for match in matches:
            merged = _merge(match, patch, builtin=builtin, path=())
            match.clear()
            match.update(merged)
    return resources


def _is_builtin(resource: Mapping[str, Any]) -> bool:
    api_version = str(resource.get("apiVersion", ""))
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    return group in _BUILTIN_API_GROUPS


def _merge_key(path: tuple[str, ...], kind_is_service: bool) -> str | None:
    field = path[-1]
    if field == "ports":
        return _SERVICE_PORTS_KEY if kind_is_service and path == ("spec", "ports") else _CONTAINER_PORTS_KEY
    return _MERGE_KEYS.get(field)


def _merge(base: Any, patch: Any, *, builtin: bool, path: tuple[str, ...], service: bool = False) -> Any:
    """Strategic merge of ``patch`` into ``base`` (both untouched; returns the result)."""
    if not isinstance(patch, dict) or not isinstance(base, dict):
        return copy.deepcopy(patch)
    if not path:
        service = patch.get("kind") == "Service"
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive is not None:
        raise KustomizeError(f"unsupported directive $patch: {directive} at {'.'.join(path) or 'top'}")
    result = copy.deepcopy(base)
    for key, value in patch.items():
        if key.startswith("$"):
            raise KustomizeError(f"unsupported directive {key} at {'.'.join(path) or 'top'}")
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value, builtin=builtin, path=(*path, key), service=service)
        elif isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = _merge_list(result[key], value, builtin=builtin, path=(*path, key), service=service)
        else:
            result[key] = _strip_directives(copy.deepcopy(value))
    return result


def _merge_list(base: list[Any], patch: list[Any], *, builtin: bool, path: tuple[str, ...], service: bool) -> list[Any]:
    key = _merge_key(path, service) if builtin else None
    if key is None:
        if not builtin:
            raise KustomizeError(
                f"list {'.'.join(path)} in a patch of a custom resource: kustomize infers its merge behaviour "
                "from a schema it may not have; patch a scalar or replace the whole object instead"
            )
        return [copy.deepcopy(item) for item in patch]  # no merge key: the patch's list replaces the base's
    by_key = {item.get(key): item for item in base if isinstance(item, dict)}
    merged: list[Any] = []
    seen: set[Any] = set()
    # kustomize 5 order: the patch's items first (merged into their originals), then the untouched originals.
    for item in patch:
        item_key = item.get(key)
        seen.add(item_key)
        if item.get("$patch") == "delete":
            continue
        original = by_key.get(item_key)
        if original is None:
            merged.append(_strip_directives(copy.deepcopy(item)))
        else:
            merged.append(_merge(original, item, builtin=builtin, path=path, service=service))
    merged.extend(copy.deepcopy(item) for item in base if not (isinstance(item, dict) and item.get(key) in seen))
    return merged


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        if any(str(k).startswith("$") for k in value):
            raise KustomizeError(f"directive in newly added content: {sorted(value)}")
        return {k: _strip_directives(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value


def _set_namespace(resources: list[Resource], namespace: str) -> None:
    for resource in resources:
        metadata = resource.setdefault("metadata", {})
        if resource.get("kind") == "Namespace":
            metadata["name"] = namespace
        elif resource.get("kind") not in _CLUSTER_SCOPED:
            metadata["namespace"] = namespace


def _pod_templates(resource: Resource) -> Iterator[dict[str, Any]]:
    """The pod template(s) of a workload: Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob."""
    spec = resource.get("spec", {})
    if resource.get("kind") == "CronJob":
        template = spec.get("jobTemplate", {}).get("spec", {}).get("template")
    else:
        template = spec.get("template")
    if isinstance(template, dict):
        yield template


def _add_labels(resources: list[Resource], pairs: Mapping[str, str], *, selectors: bool, templates: bool) -> None:
    for resource in resources:
        resource.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
        if templates:
            for template in _pod_templates(resource):
                template.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
        if selectors:
            spec = resource.get("spec", {})
            if resource.get("kind") == "Service":
                spec.setdefault("selector", {}).update(pairs)
            elif isinstance(spec.get("selector"), dict) and resource.get("kind") != "CronJob":
                spec["selector"].setdefault("matchLabels", {}).update(pairs)


def _add_annotations(resources: list[Resource], pairs: Mapping[str, str]) -> None:
    for resource in resources:
        resource.setdefault("metadata", {}).setdefault("annotations", {}).update(pairs)
        for template in _pod_templates(resource):
            template.setdefault("metadata", {}).setdefault("annotations", {}).update(pairs)


@dataclass(frozen=True)
class ImageRef:
    name: str
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, ref: str) -> ImageRef:
        name, _, digest = ref.partition("@")
        last = name.rsplit("/", 1)[-1]
        tag = None
        if ":" in last:
            name, tag = name.rsplit(":", 1)
        return cls(name=name, tag=tag, digest=digest or None)

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def _set_image(resources: list[Resource], image: Mapping[str, str]) -> None:
    for container in iter_containers(resources):
        ref = ImageRef.parse(container.get("image", ""))
        if ref.name != image["name"]:
            continue
        name = image.get("newName", ref.name)
        tag = image.get("newTag", ref.tag)
        digest = image.get("digest", ref.digest)
        if "digest" in image:
            tag = None  # kustomize: a digest replaces the tag
        container["image"] = str(ImageRef(name=name, tag=tag, digest=digest))


def _walk_containers(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from (c for c in value if isinstance(c, dict))
            else:
                yield from _walk_containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk_containers(item)


def iter_containers(resources: list[Resource]) -> Iterator[dict[str, Any]]:
    for resource in resources:
        yield from _walk_containers(resource)


def canonical(resources: list[Resource]) -> list[Resource]:
    """Resources in a stable order (for comparing renderings)."""
    return sorted(resources, key=lambda r: (r["kind"], r["metadata"].get("namespace", ""), r["metadata"]["name"]))


# ---------------------------------------------------------------------------------------------------------------------
# Schema validation
# ---------------------------------------------------------------------------------------------------------------------


def supported_versions() -> list[str]:
    """The oldest minor we claim and the newest schema set kubernetes-validate ships (``major.minor``)."""
    bundled = sorted({kv_utils.major_minor(v) for v in kv_utils.all_versions()}, key=_minor_key)
    if OLDEST_KUBERNETES not in bundled:
        raise RuntimeError(f"kubernetes-validate no longer bundles {OLDEST_KUBERNETES} (has {bundled[0]}..)")
    return [OLDEST_KUBERNETES, bundled[-1]] if bundled[-1] != OLDEST_KUBERNETES else [OLDEST_KUBERNETES]


def _minor_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def validate_schema(resource: Resource, version: str) -> list[str]:
    """Strict schema validation: a built-in kind against Kubernetes ``version``, a ScaledObject against ours."""
    if resource.get("kind") == "ScaledObject":
        return validate_scaledobject(resource)
    try:
        kubernetes_validate.validate(resource, f"{version}.0", strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path) or "(top)"
        return [f"{resource_id(resource)}: invalid for Kubernetes {version} at {where}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [f"{resource_id(resource)}: {exc.message} (a custom resource needs its own schema here)"]
    return []


def validate_scaledobject(resource: Resource) -> list[str]:
    schema = json.loads(SCALEDOBJECT_SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{resource_id(resource)}: invalid at {'.'.join(str(p) for p in error.absolute_path) or '(top)'}: "
        f"{error.message}"
        for error in sorted(validator.iter_errors(resource), key=lambda e: list(map(str, e.absolute_path)))
    ]


# ---------------------------------------------------------------------------------------------------------------------
# Helpers for the semantic checks
# ---------------------------------------------------------------------------------------------------------------------


def find(resources: list[Resource], kind: str, name: str | None = None) -> list[Resource]:
    return [r for r in resources if r.get("kind") == kind and (name is None or r["metadata"].get("name") == name)]


def one(resources: list[Resource], kind: str, name: str) -> Resource | None:
    found = find(resources, kind, name)
    return found[0] if len(found) == 1 else None


def pod_template(resource: Resource) -> dict[str, Any]:
    for template in _pod_templates(resource):
        return template
    raise KeyError(f"{resource_id(resource)} has no pod template")


def pod_labels(resource: Resource) -> dict[str, str]:
    labels: dict[str, str] = pod_template(resource).get("metadata", {}).get("labels", {})
    return labels


def workloads(resources: list[Resource]) -> list[Resource]:
    return [r for r in resources if r.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")]


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector (matchLabels/matchExpressions) against pod labels; an empty selector matches everything."""
    if not selector:
        return True
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def service_selects(service: Resource, labels: Mapping[str, str]) -> bool:
    selector = service.get("spec", {}).get("selector")
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def containers_of(resource: Resource) -> list[dict[str, Any]]:
    spec = pod_template(resource).get("spec", {})
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def configmap_data(resources: list[Resource]) -> dict[str, str]:
    cm = one(resources, "ConfigMap", CONFIGMAP)
    return dict(cm.get("data", {})) if cm else {}


_QUANTITY = re.compile(r"^([0-9.]+(?:[eE][-+]?[0-9]+)?)([a-zA-Z]*)$")
_QUANTITY_UNITS = {
    "": 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
}
_REDIS_UNITS = {"": 1, "k": 1000, "kb": 1024, "m": 10**6, "mb": 2**20, "g": 10**9, "gb": 2**30}


def parse_quantity(value: str | int | float) -> float:
    """A Kubernetes resource quantity (``250m``, ``1.5``, ``512Mi``, ``1G``) as a number."""
    match = _QUANTITY.match(str(value))
    if not match or match.group(2) not in _QUANTITY_UNITS:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    return float(match.group(1)) * _QUANTITY_UNITS[match.group(2)]


def parse_redis_bytes(value: str) -> int:
    """A Redis memory size (``600mb``: 1mb = 1024 * 1024 bytes; ``1m`` = 10**6)."""
    match = re.match(r"^(\d+)([a-zA-Z]*)$", value.strip())
    if not match or match.group(2).lower() not in _REDIS_UNITS:
        raise ValueError(f"not a Redis memory size: {value!r}")
    return int(match.group(1)) * _REDIS_UNITS[match.group(2).lower()]


def _expand(arg: str, env: Mapping[str, str]) -> str:
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), arg)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------------------------------
# Semantic checks
# ---------------------------------------------------------------------------------------------------------------------


def check_workload_selectors(resources: list[Resource]) -> list[str]:
    """Each Deployment/StatefulSet's selector matches its own pod template's labels."""
    problems = []
    for workload in workloads(resources):
        if workload["kind"] in ("Job", "CronJob"):
            continue  # the Job controller generates their selectors
        selector = workload.get("spec", {}).get("selector")
        if not selector:
            problems.append(f"{resource_id(workload)}: has no spec.selector")
        elif not selector_matches(selector, pod_labels(workload)):
            problems.append(
                f"{resource_id(workload)}: spec.selector {selector} does not match its pod template's labels "
                f"{pod_labels(workload)}"
            )
    return problems


def check_services(resources: list[Resource]) -> list[str]:
    """Every Service selects the pods of exactly one workload, and its named targetPorts exist in those pods."""
    problems = []
    for service in find(resources, "Service"):
        selected = [w for w in workloads(resources) if service_selects(service, pod_labels(w))]
        if len(selected) != 1:
            names = [resource_id(w) for w in selected] or ["no workload"]
            problems.append(
                f"{resource_id(service)}: selector {service.get('spec', {}).get('selector')} must select the pods "
                f"of exactly one workload, selects {', '.join(names)}"
            )
            continue
        declared = {p.get("name") for c in containers_of(selected[0]) for p in c.get("ports", [])}
        numbers = {p.get("containerPort") for c in containers_of(selected[0]) for p in c.get("ports", [])}
        for port in service.get("spec", {}).get("ports", []):
            target = port.get("targetPort", port.get("port"))
            if (isinstance(target, str) and target not in declared) or (
                isinstance(target, int) and target not in numbers
            ):
                problems.append(
                    f"{resource_id(service)}: targetPort {target!r} is not a port declared by "
                    f"{resource_id(selected[0])}"
                )
    for sts in find(resources, "StatefulSet"):
        governing = one(resources, "Service", sts.get("spec", {}).get("serviceName", ""))
        if governing is None:
            problems.append(f"{resource_id(sts)}: serviceName {sts['spec'].get('serviceName')!r} is not a Service")
        elif governing["spec"].get("clusterIP") != "None":
            problems.append(f"{resource_id(sts)}: its governing Service {resource_id(governing)} is not headless")
        elif not service_selects(governing, pod_labels(sts)):
            problems.append(f"{resource_id(sts)}: its governing Service {resource_id(governing)} does not select it")
    return problems


def check_pdb(resources: list[Resource]) -> list[str]:
    """The PodDisruptionBudget covers exactly the worker Deployment's pods and allows one down at a time."""
    worker = one(resources, "Deployment", WORKER)
    pdbs = find(resources, "PodDisruptionBudget")
    if worker is None:
        return [f"Deployment/{WORKER}: missing"]
    if not pdbs:
        return [f"PodDisruptionBudget: none protects Deployment/{WORKER}"]
    problems = []
    for pdb in pdbs:
        selector = pdb.get("spec", {}).get("selector")
        if not selector_matches(selector, pod_labels(worker)) or not selector:
            problems.append(f"{resource_id(pdb)}: selector {selector} does not select the pods of Deployment/{WORKER}")
        others = [
            resource_id(w)
            for w in workloads(resources)
            if w is not worker and selector_matches(selector, pod_labels(w))
        ]
        if others:
            problems.append(f"{resource_id(pdb)}: selector {selector} also selects the pods of {', '.join(others)}")
        if pdb.get("spec", {}).get("maxUnavailable") != 1:
            problems.append(f"{resource_id(pdb)}: maxUnavailable should be 1, is {pdb['spec'].get('maxUnavailable')}")
    return problems


def _policy_peers(policy: Resource) -> tuple[list[dict[str, Any]], list[str]]:
    """The pod selectors a NetworkPolicy admits, and problems with rules that admit more than pods of this namespace
    or open more than Redis' port."""
    peers: list[dict[str, Any]] = []
    problems = []
    for rule in policy["spec"].get("ingress", []):
        ports = rule.get("ports", [])
        if not ports or any(p.get("port") not in (6379, "redis") for p in ports):
            problems.append(f"{resource_id(policy)}: an ingress rule opens ports {ports}, not just 6379")
        if not rule.get("from"):
            problems.append(f"{resource_id(policy)}: an ingress rule has no `from`: it admits every pod")
        for peer in rule.get("from", []):
            if "ipBlock" in peer or "namespaceSelector" in peer or not peer.get("podSelector"):
                problems.append(f"{resource_id(policy)}: peer {peer} admits more than this namespace's clients")
            else:
                peers.append(peer["podSelector"])
    return peers, problems


def check_network_policy(resources: list[Resource]) -> list[str]:
    """A NetworkPolicy selects the Redis pods and admits, on 6379 only, the worker and the producer pods only."""
    redis = one(resources, "StatefulSet", REDIS)
    if redis is None:
        return [f"StatefulSet/{REDIS}: missing"]
    policies = [
        p
        for p in find(resources, "NetworkPolicy")
        if p.get("spec", {}).get("podSelector", {}).get("matchLabels")
        and selector_matches(p["spec"]["podSelector"], pod_labels(redis))
    ]
    if not policies:
        return [f"NetworkPolicy: none selects the pods of StatefulSet/{REDIS} (labels {pod_labels(redis)})"]
    clients = {
        "worker": find(resources, "Deployment", WORKER),
        "producer": find(resources, "CronJob") + find(resources, "Job"),
    }
    problems = [] if clients["producer"] else ["CronJob/Job: no producer Job template found"]
    for policy in policies:
        if "Ingress" not in policy["spec"].get("policyTypes", ["Ingress"]):
            problems.append(f"{resource_id(policy)}: policyTypes lacks Ingress")
        peers, peer_problems = _policy_peers(policy)
        problems += peer_problems
        problems += [
            f"{resource_id(policy)}: does not admit the {role} pods of {resource_id(w)} (labels {pod_labels(w)})"
            for role, members in clients.items()
            for w in members
            if not any(selector_matches(peer, pod_labels(w)) for peer in peers)
        ]
        client_ids = {resource_id(w) for members in clients.values() for w in members}
        others = [
            resource_id(w)
            for w in workloads(resources)
            if resource_id(w) not in client_ids and any(selector_matches(peer, pod_labels(w)) for peer in peers)
        ]
        if others:
            problems.append(f"{resource_id(policy)}: also admits {', '.join(others)}")
    return problems


def check_grace_period(resources: list[Resource]) -> list[str]:
    """The worker's terminationGracePeriodSeconds covers the drain (EXTRACT_JOB_COMPLETION_WAIT_S) plus a margin."""
    worker = one(resources, "Deployment", WORKER)
    wait = _int(configmap_data(resources).get("EXTRACT_JOB_COMPLETION_WAIT_S"))
    if worker is None or wait is None:
        return [f"Deployment/{WORKER} or EXTRACT_JOB_COMPLETION_WAIT_S in ConfigMap/{CONFIGMAP}: missing"]
    grace = pod_template(worker).get("spec", {}).get("terminationGracePeriodSeconds", 30)
    if grace < wait + GRACE_MARGIN_S:
        return [
            f"Deployment/{WORKER}: terminationGracePeriodSeconds {grace} < EXTRACT_JOB_COMPLETION_WAIT_S {wait} + "
            f"{GRACE_MARGIN_S} s margin: the kubelet would SIGKILL workers still draining"
        ]
    return []


def check_images(resources: list[Resource]) -> list[str]:
    """Every container image is pinned: a tag that is not ``latest``, or a digest."""
    problems = []
    for resource in resources:
        for container in _walk_containers(resource):
            ref = ImageRef.parse(container.get("image", ""))
            where = f"{resource_id(resource)}: container {container.get('name')!r} image {container.get('image')!r}"
            if not ref.name:
                problems.append(f"{where} is empty")
            elif ref.tag == "latest":
                problems.append(f"{where} uses :latest; pin a version tag or a digest")
            elif ref.tag is None and ref.digest is None:
                problems.append(f"{where} has no tag (means :latest); pin a version tag or a digest")
            elif ref.digest is not None and not re.fullmatch(r"sha256:[0-9a-f]{64}", ref.digest):
                problems.append(f"{where} has a malformed digest")
    return problems


def check_resources(resources: list[Resource]) -> list[str]:
    """Every container requests and limits cpu and memory, with requests <= limits."""
    problems = []
    for resource in resources:
        for container in _walk_containers(resource):
            where = f"{resource_id(resource)}: container {container.get('name')!r}"
            spec = container.get("resources", {})
            for part in ("requests", "limits"):
                missing = [r for r in ("cpu", "memory") if r not in spec.get(part, {})]
                if missing:
                    problems.append(f"{where} has no resources.{part} for {', '.join(missing)}")
            for res in ("cpu", "memory"):
                request, limit = spec.get("requests", {}).get(res), spec.get("limits", {}).get(res)
                if request is not None and limit is not None and parse_quantity(request) > parse_quantity(limit):
                    problems.append(f"{where} requests more {res} ({request}) than its limit ({limit})")
    return problems


def check_probes(resources: list[Resource]) -> list[str]:
    """HTTP/TCP/gRPC probes point at a port the container declares (by name or number)."""
    problems = []
    for resource in resources:
        for container in _walk_containers(resource):
            names = {p.get("name") for p in container.get("ports", [])}
            numbers = {p.get("containerPort") for p in container.get("ports", [])}
            for probe_name in ("startupProbe", "livenessProbe", "readinessProbe"):
                probe = container.get(probe_name)
                if probe is None:
                    continue
                for handler in ("httpGet", "tcpSocket", "grpc"):
                    if handler not in probe:
                        continue
                    port = probe[handler].get("port")
                    if (isinstance(port, str) and port not in names) or (isinstance(port, int) and port not in numbers):
                        declared = sorted(map(str, names | numbers))
                        problems.append(
                            f"{resource_id(resource)}: container {container.get('name')!r} {probe_name} uses port "
                            f"{port!r}, which the container does not declare (ports: {declared})"
                        )
    return problems


def check_worker(resources: list[Resource]) -> list[str]:
    """The worker: `worker run`, config + secret + pod name in its env, probes on the metrics port, hardened."""
    worker = one(resources, "Deployment", WORKER)
    if worker is None:
        return [f"Deployment/{WORKER}: missing"]
    spec = pod_template(worker).get("spec", {})
    container = next((c for c in spec.get("containers", []) if c.get("name") == WORKER_CONTAINER), None)
    if container is None:
        return [f"Deployment/{WORKER}: no container named {WORKER_CONTAINER!r}"]
    problems = []
    where = f"Deployment/{WORKER}: container {WORKER_CONTAINER!r}"
    if container.get("command") not in (None, ["worker"]) or container.get("args") != ["run"]:
        problems.append(f"{where} should run `worker run` (args ['run'] on the image's entrypoint)")
    if {"configMapRef": {"name": CONFIGMAP}} not in container.get("envFrom", []):
        problems.append(f"{where} does not take its environment from ConfigMap/{CONFIGMAP}")
    env = {e["name"]: e for e in container.get("env", [])}
    secret_ref = env.get("OPENAI_API_KEY", {}).get("valueFrom", {}).get("secretKeyRef", {})
    if secret_ref.get("name") != SECRET or secret_ref.get("key") != "OPENAI_API_KEY":
        problems.append(f"{where}: OPENAI_API_KEY must come from Secret/{SECRET} key OPENAI_API_KEY")
    field_ref = env.get("EXTRACT_WORKER_NAME", {}).get("valueFrom", {}).get("fieldRef", {})
    if field_ref.get("fieldPath") != "metadata.name":
        problems.append(f"{where}: EXTRACT_WORKER_NAME must be the pod name (downward API metadata.name)")
    ports = {p.get("name"): p.get("containerPort") for p in container.get("ports", [])}
    metrics_port = _int(configmap_data(resources).get("EXTRACT_METRICS_PORT"))
    if ports.get(METRICS_PORT_NAME) is None or ports.get(METRICS_PORT_NAME) != metrics_port:
        problems.append(
            f"{where}: port {METRICS_PORT_NAME!r} ({ports.get(METRICS_PORT_NAME)}) must equal "
            f"EXTRACT_METRICS_PORT ({metrics_port})"
        )
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        http = container.get(probe, {}).get("httpGet", {})
        if http.get("path") != path or http.get("port") != METRICS_PORT_NAME:
            problems.append(f"{where}: {probe} should be GET {path} on port {METRICS_PORT_NAME!r}, is {http}")
    return problems


def check_security(resources: list[Resource]) -> list[str]:
    """Pods run as non-root with seccomp RuntimeDefault; containers: no privilege escalation, read-only root
    filesystem, all capabilities dropped; a writable /tmp where the root is read-only."""
    problems = []
    for workload in workloads(resources):
        spec = pod_template(workload).get("spec", {})
        pod_sc = spec.get("securityContext", {})
        if pod_sc.get("runAsNonRoot") is not True:
            problems.append(f"{resource_id(workload)}: securityContext.runAsNonRoot must be true")
        if pod_sc.get("runAsUser", 1) == 0:
            problems.append(f"{resource_id(workload)}: securityContext.runAsUser is 0 (root)")
        if pod_sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{resource_id(workload)}: securityContext.seccompProfile.type must be RuntimeDefault")
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in containers_of(workload):
            where = f"{resource_id(workload)}: container {container.get('name')!r}"
            sc = container.get("securityContext", {})
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation must be false")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: readOnlyRootFilesystem must be true")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                problems.append(f"{where}: capabilities.drop must include ALL")
            if sc.get("capabilities", {}).get("add"):
                problems.append(f"{where}: adds capabilities {sc['capabilities']['add']}")
            tmp = next((m for m in container.get("volumeMounts", []) if m.get("mountPath") == TMP), None)
            if tmp is None or "emptyDir" not in volumes.get(tmp["name"], {}):
                problems.append(f"{where}: needs an emptyDir mounted at /tmp (the root filesystem is read-only)")
    return problems


def check_redis(resources: list[Resource]) -> list[str]:
    """Redis: AOF everysec, noeviction, maxmemory with fork headroom under its limit, data on the claim template."""
    sts = one(resources, "StatefulSet", REDIS)
    if sts is None:
        return [f"StatefulSet/{REDIS}: missing"]
    container = next((c for c in containers_of(sts) if c.get("name") == REDIS), None)
    if container is None:
        return [f"StatefulSet/{REDIS}: no container named {REDIS!r}"]
    problems = []
    where = f"StatefulSet/{REDIS}: container {REDIS!r}"
    image = ImageRef.parse(container.get("image", ""))
    if image.name != "redis" or not (image.tag or "").startswith("7.2"):
        problems.append(f"{where}: image should be redis 7.2 pinned by tag, is {container.get('image')!r}")
    env = {e["name"]: e.get("value", "") for e in container.get("env", [])}
    args = [_expand(str(a), env) for a in [*container.get("command", []), *container.get("args", [])]]
    options = dict(zip(args[1::2], args[2::2], strict=False)) if args[:1] == ["redis-server"] else {}
    for option, value in (("--appendonly", "yes"), ("--appendfsync", "everysec"), ("--maxmemory-policy", "noeviction")):
        if options.get(option) != value:
            problems.append(f"{where}: needs `{option} {value}`, has {options.get(option)!r} (args {args})")
    limit = container.get("resources", {}).get("limits", {}).get("memory")
    try:
        maxmemory = parse_redis_bytes(options.get("--maxmemory", ""))
    except ValueError as exc:
        problems.append(f"{where}: --maxmemory: {exc}")
    else:
        if limit is not None and maxmemory > REDIS_MAXMEMORY_SHARE * parse_quantity(limit):
            problems.append(
                f"{where}: --maxmemory {options['--maxmemory']} exceeds {REDIS_MAXMEMORY_SHARE:.0%} of the memory "
                f"limit {limit}; an AOF rewrite's fork would risk an OOM kill"
            )
    claims = {t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])}
    data = next((m for m in container.get("volumeMounts", []) if m.get("mountPath") == options.get("--dir")), None)
    if data is None or data["name"] not in claims:
        problems.append(f"{where}: its --dir {options.get('--dir')!r} is not on a volumeClaimTemplate ({claims})")
    return problems


def check_redis_url(resources: list[Resource]) -> list[str]:
    """REDIS_URL in the ConfigMap names a Service of this rendering and one of its ports."""
    url = configmap_data(resources).get("REDIS_URL", "")
    parts = urlsplit(url)
    host = (parts.hostname or "").split(".")[0]
    service = one(resources, "Service", host)
    if parts.scheme not in ("redis", "rediss") or service is None:
        return [f"ConfigMap/{CONFIGMAP}: REDIS_URL {url!r} does not point at a Service of this deployment"]
    if parts.port not in [p.get("port") for p in service["spec"].get("ports", [])]:
        return [f"ConfigMap/{CONFIGMAP}: REDIS_URL port {parts.port} is not a port of {resource_id(service)}"]
    return []


def check_metrics_service(resources: list[Resource]) -> list[str]:
    """A Service exposes the worker's metrics port with Prometheus scrape annotations."""
    worker = one(resources, "Deployment", WORKER)
    if worker is None:
        return [f"Deployment/{WORKER}: missing"]
    metrics_port = _int(configmap_data(resources).get("EXTRACT_METRICS_PORT"))
    for service in find(resources, "Service"):
        if not service_selects(service, pod_labels(worker)):
            continue
        notes = service["metadata"].get("annotations", {})
        ports = [p for p in service["spec"].get("ports", []) if p.get("targetPort") == METRICS_PORT_NAME]
        if (
            ports
            and ports[0].get("port") == metrics_port
            and notes.get("prometheus.io/scrape") == "true"
            and notes.get("prometheus.io/port") == str(metrics_port)
        ):
            return []
    return [
        f"Service: none selects Deployment/{WORKER} on port {metrics_port} (targetPort {METRICS_PORT_NAME!r}) "
        "with prometheus.io/scrape and prometheus.io/port annotations"
    ]


@dataclass(frozen=True)
class Sizing:
    """The rate-limit arithmetic behind maxReplicaCount (Little's law)."""

    rpm: int
    tpm: int
    limit_headroom: float
    tokens_per_request: float
    latency_s: float
    headroom: float
    concurrency: int

    @property
    def requests_per_s(self) -> float:
        ceilings = [self.rpm / 60] if self.rpm else []
        if self.tpm:
            ceilings.append(self.tpm / 60 / self.tokens_per_request)
        return self.limit_headroom * min(ceilings) if ceilings else math.inf

    @property
    def in_flight(self) -> float:
        return self.requests_per_s * self.latency_s

    @property
    def replicas(self) -> int:
        return math.ceil(self.in_flight * self.headroom / self.concurrency)


def sizing(resources: list[Resource], scaled_object: Resource) -> Sizing:
    data = configmap_data(resources)
    notes = scaled_object["metadata"].get("annotations", {})
    return Sizing(
        rpm=int(data.get("EXTRACT_RPM") or 0),
        tpm=int(data.get("EXTRACT_TPM") or 0),
        limit_headroom=float(data.get("EXTRACT_LIMIT_HEADROOM", "1")),
        tokens_per_request=float(notes[SIZING_PREFIX + "tokens-per-request"]),
        latency_s=float(notes[SIZING_PREFIX + "latency-s"]),
        headroom=float(notes[SIZING_PREFIX + "headroom"]),
        concurrency=int(data["EXTRACT_CONCURRENCY"]),
    )


def check_scaled_object(resources: list[Resource]) -> list[str]:
    """The ScaledObject (when present) targets the worker Deployment, scales on due jobs per pod, gently down, and
    its maxReplicaCount is the rate-limit arithmetic of its annotations and the ConfigMap."""
    objects = find(resources, "ScaledObject")
    if not objects:
        return []
    problems = []
    worker = one(resources, "Deployment", WORKER)
    data = configmap_data(resources)
    for so in objects:
        sid, spec = resource_id(so), so.get("spec", {})
        target = spec.get("scaleTargetRef", {})
        if (target.get("kind", "Deployment"), target.get("name"), target.get("apiVersion", "apps/v1")) != (
            "Deployment",
            WORKER,
            "apps/v1",
        ) or worker is None:
            problems.append(f"{sid}: scaleTargetRef {target} is not the Deployment/{WORKER} of this deployment")
        elif "replicas" in worker.get("spec", {}):
            problems.append(
                f"Deployment/{WORKER}: sets spec.replicas although {sid} owns the replica count "
                "(every `kubectl apply` would reset the autoscaler)"
            )
        low, high = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
        if not 1 <= low <= high:
            problems.append(f"{sid}: needs 1 <= minReplicaCount ({low}) <= maxReplicaCount ({high})")
        down = spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior", {}).get("scaleDown")
        if not down or down.get("stabilizationWindowSeconds", 0) < MIN_SCALE_DOWN_STABILIZATION_S:
            problems.append(
                f"{sid}: scaleDown.stabilizationWindowSeconds must be >= {MIN_SCALE_DOWN_STABILIZATION_S} s"
            )
        elif not down.get("policies"):
            problems.append(f"{sid}: scaleDown needs a policy limiting how fast pods are removed")
        problems.extend(_check_trigger(resources, so, data))
        try:
            size = sizing(resources, so)
        except (KeyError, ValueError) as exc:
            problems.append(f"{sid}: sizing inputs missing or invalid ({exc}); see {SIZING_PREFIX}* annotations")
            continue
        if high != size.replicas:
            problems.append(
                f"{sid}: maxReplicaCount {high} does not follow from the rate limit: "
                f"{size.requests_per_s:.1f} requests/s x {size.latency_s:g} s = {size.in_flight:.0f} in flight, "
                f"x {size.headroom:g} / {size.concurrency} per pod -> {size.replicas}"
            )
    return problems


def _check_trigger(resources: list[Resource], so: Resource, data: Mapping[str, str]) -> list[str]:
    sid = resource_id(so)
    triggers = so.get("spec", {}).get("triggers", [])
    due = [t for t in triggers if t.get("type") in ("metrics-api", "prometheus")]
    if not due:
        return [f"{sid}: needs a metrics-api or prometheus trigger on {DUE_JOBS_METRIC} (not ZCARD of the queue)"]
    problems = []
    for trigger in due:
        meta = trigger.get("metadata", {})
        if trigger.get("metricType", "AverageValue") != "AverageValue":
            problems.append(f"{sid}: trigger {trigger.get('name')!r} must use AverageValue (due jobs per pod)")
        if meta.get("targetValue", meta.get("threshold")) != data.get("EXTRACT_CONCURRENCY"):
            problems.append(
                f"{sid}: trigger target {meta.get('targetValue', meta.get('threshold'))!r} should equal "
                f"EXTRACT_CONCURRENCY {data.get('EXTRACT_CONCURRENCY')!r} (one pod per that many due jobs)"
            )
        if trigger["type"] == "prometheus":
            if DUE_JOBS_METRIC not in meta.get("query", ""):
                problems.append(f"{sid}: prometheus query does not use {DUE_JOBS_METRIC}")
            continue
        if meta.get("valueLocation") != DUE_JOBS_METRIC or meta.get("format") != "prometheus":
            problems.append(f"{sid}: metrics-api must read {DUE_JOBS_METRIC} in prometheus format")
        url = urlsplit(meta.get("url", ""))
        host = (url.hostname or "").split(".")
        service = one(resources, "Service", host[0])
        namespace = so["metadata"].get("namespace")
        worker = one(resources, "Deployment", WORKER)
        if service is None or worker is None or not service_selects(service, pod_labels(worker)):
            problems.append(f"{sid}: metrics-api url {meta.get('url')!r} is not a Service of the worker pods")
        elif len(host) < 2 or host[1] != namespace:
            problems.append(
                f"{sid}: metrics-api url {meta.get('url')!r} must name the namespace {namespace!r} "
                "(KEDA resolves it from its own namespace)"
            )
        elif url.port not in [p.get("port") for p in service["spec"].get("ports", [])]:
            problems.append(f"{sid}: metrics-api url port {url.port} is not a port of {resource_id(service)}")
    return problems


def check_secrets(resources: list[Resource]) -> list[str]:
    """No real-looking OpenAI key (``sk-`` + 20 or more characters) in any Secret or anywhere in the manifests."""
    problems = []
    for resource in resources:
        values: list[str] = []
        if resource.get("kind") == "Secret":
            values += [str(v) for v in resource.get("stringData", {}).values()]
            for v in resource.get("data", {}).values():
                try:
                    values.append(base64.b64decode(str(v)).decode("utf-8", "replace"))
                except ValueError:
                    problems.append(f"{resource_id(resource)}: data is not base64")
        values.append(json.dumps(resource))
        if any(REAL_LOOKING_KEY.search(v) for v in values):
            problems.append(f"{resource_id(resource)}: holds a real-looking API key (sk-...); use a placeholder")
    return problems


def check_queue_read_limit(resources: list[Resource]) -> list[str]:
    """arq's running jobs stay at the queue head: each poll must read past all of the fleet's running jobs."""
    data = configmap_data(resources)
    concurrency, read_limit = _int(data.get("EXTRACT_CONCURRENCY")), _int(data.get("EXTRACT_QUEUE_READ_LIMIT"))
    scaled = next((r for r in resources if r.get("kind") == "ScaledObject"), None)
    replicas = scaled["spec"].get("maxReplicaCount", 1) if scaled else 1
    if concurrency is None or read_limit is None:
        return [f"ConfigMap/{CONFIGMAP}: EXTRACT_CONCURRENCY and EXTRACT_QUEUE_READ_LIMIT must be set"]
    needed = math.ceil(1.5 * replicas * concurrency)
    if read_limit < needed:
        return [
            f"ConfigMap/{CONFIGMAP}: EXTRACT_QUEUE_READ_LIMIT {read_limit} < 1.5 x {replicas} replicas x "
            f"{concurrency} slots = {needed}: idle pods would not see due jobs behind the running ones"
        ]
    return []


SEMANTIC_CHECKS: tuple[Callable[[list[Resource]], list[str]], ...] = (
    check_workload_selectors,
    check_services,
    check_pdb,
    check_network_policy,
    check_grace_period,
    check_images,
    check_resources,
    check_probes,
    check_worker,
    check_security,
    check_redis,
    check_redis_url,
    check_metrics_service,
    check_scaled_object,
    check_secrets,
    check_queue_read_limit,
)


def check_all(resources: list[Resource]) -> list[str]:
    """Every semantic check; the list of problems found (empty: all good)."""
    return [problem for check in SEMANTIC_CHECKS for problem in check(resources)]


# ---------------------------------------------------------------------------------------------------------------------
# Settings coverage
# ---------------------------------------------------------------------------------------------------------------------

ENV_ALIASES = {
    "redis_url": "REDIS_URL",
    "openai_api_key": "OPENAI_API_KEY",
    "openai_base_url": "OPENAI_BASE_URL",
    "schema_spec": "EXTRACT_SCHEMA",
}
FROM_SECRET = {"OPENAI_API_KEY"}
FROM_DOWNWARD_API = {"EXTRACT_WORKER_NAME"}
PENDING_SETTINGS: set[str] = set()
"""Names allowed in the ConfigMap ahead of their Settings field (none today)."""


def env_names(fields: Mapping[str, Any]) -> dict[str, str]:
    """Settings field -> the environment variable the manifests set for it."""
    return {name: ENV_ALIASES.get(name, f"EXTRACT_{name.upper()}") for name in fields}


def check_settings_coverage(resources: list[Resource], fields: Mapping[str, Any]) -> list[str]:
    """Every Settings field is set by the ConfigMap, except the key (Secret), the worker name (downward API) and
    the per-batch settings the ConfigMap's annotation declares unset (their default must be None). No ConfigMap
    key is unknown to Settings (a typo would be silently ignored: Settings has ``extra="ignore"``)."""
    cm = one(resources, "ConfigMap", CONFIGMAP)
    if cm is None:
        return [f"ConfigMap/{CONFIGMAP}: missing"]
    data = cm.get("data", {})
    unset = set(cm["metadata"].get("annotations", {}).get(UNSET_ANNOTATION, "").split())
    names = env_names(fields)
    problems = []
    for field, env in names.items():
        if env in FROM_SECRET | FROM_DOWNWARD_API:
            if env in data:
                problems.append(f"ConfigMap/{CONFIGMAP}: {env} must not be here (it comes from the Secret/pod name)")
        elif env in unset:
            default = getattr(fields[field], "default", None)
            if default is not None:
                problems.append(f"ConfigMap/{CONFIGMAP}: {env} is declared unset but its default is {default!r}")
        elif env not in data:
            problems.append(f"ConfigMap/{CONFIGMAP}: Settings.{field} ({env}) is not set")
    known = set(names.values()) | PENDING_SETTINGS
    problems += [
        f"ConfigMap/{CONFIGMAP}: {key} is not a setting of schemas.settings.Settings"
        for key in sorted(set(data) - known)
    ]
    problems += [
        f"ConfigMap/{CONFIGMAP}: {UNSET_ANNOTATION} names {key}, which is not a setting"
        for key in sorted(unset - set(names.values()))
    ]
    return problems


# ---------------------------------------------------------------------------------------------------------------------
# Dockerfile
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str
    line: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped (no heredocs, no parser directives)."""
    instructions: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, value = full.partition(" ")
        instructions.append(Instruction(keyword.upper(), value.strip(), start))
    return instructions


def _env_pairs(value: str) -> list[tuple[str, str]]:
    tokens = shlex.split(value)
    if tokens and "=" not in tokens[0]:
        return [(tokens[0], " ".join(tokens[1:]))]  # legacy form: ENV KEY value
    return [(t.partition("=")[0], t.partition("=")[2]) for t in tokens]


def _exec_form(value: str) -> list[str] | None:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, list) and all(isinstance(p, str) for p in parsed) else None


def _from_image(instruction: Instruction) -> str:
    return next((t for t in instruction.value.split() if not t.startswith("--")), "")


SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)


def check_dockerfile(text: str) -> list[str]:  # noqa: C901 - one list of independent rules
    """Multi-stage, final stage python:3.11-slim copying the builder's venv, non-root final USER, exec-form
    ENTRYPOINT/CMD, PYTHONUNBUFFERED=1, no secret-looking ENV with a value, no :latest base."""
    instructions = parse_dockerfile(text)
    problems = []
    froms = [i for i in instructions if i.keyword == "FROM"]
    if len(froms) < 2:
        problems.append(f"Dockerfile: not multi-stage ({len(froms)} FROM)")
    for instruction in froms:
        image = ImageRef.parse(_from_image(instruction))
        if image.tag in (None, "latest") and image.digest is None:
            problems.append(f"Dockerfile:{instruction.line}: base image {instruction.value!r} is not pinned")
    final_index = max((n for n, i in enumerate(instructions) if i.keyword == "FROM"), default=-1)
    final = instructions[final_index + 1 :]
    if froms and not _from_image(froms[-1]).startswith("python:3.11-slim"):
        problems.append(f"Dockerfile: final stage is {froms[-1].value!r}, not python:3.11-slim")
    if not any(i.keyword == "COPY" and "--from=" in i.value for i in final):
        problems.append("Dockerfile: the final stage copies nothing from the builder stage")
    users = [i for i in final if i.keyword == "USER"]
    if not users:
        problems.append("Dockerfile: the final stage has no USER (runs as root)")
    else:
        user = users[-1].value.split(":")[0]
        if user in ("root", "0") or (user.isdigit() and int(user) < 1000):
            problems.append(f"Dockerfile:{users[-1].line}: final USER {users[-1].value!r} is root or a system uid")
    for keyword in ("ENTRYPOINT", "CMD"):
        found = [i for i in final if i.keyword == keyword]
        if not found:
            problems.append(f"Dockerfile: the final stage has no {keyword}")
        elif _exec_form(found[-1].value) is None:
            problems.append(
                f"Dockerfile:{found[-1].line}: {keyword} {found[-1].value!r} is shell form; use the exec (JSON) "
                "form so the process is PID 1 and receives SIGTERM"
            )
    env: dict[str, str] = {}
    for instruction in (i for i in instructions if i.keyword in ("ENV", "ARG")):
        pairs = (
            _env_pairs(instruction.value)
            if instruction.keyword == "ENV"
            else [(instruction.value.partition("=")[0], instruction.value.partition("=")[2])]
        )
        for key, value in pairs:
            if instruction.keyword == "ENV":
                env[key] = value
            if SECRET_NAME.search(key) and value:
                problems.append(
                    f"Dockerfile:{instruction.line}: {instruction.keyword} {key} holds a value; secrets come from "
                    "the environment at run time, never from the image"
                )
    if env.get("PYTHONUNBUFFERED") != "1":
        problems.append("Dockerfile: ENV PYTHONUNBUFFERED=1 missing (logs would be buffered)")
    return problems


DOCKERIGNORE_REQUIRED = (".venv", ".git", "results", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache")


def check_dockerignore(text: str) -> list[str]:
    entries = {line.strip().strip("/").removeprefix("**/") for line in text.splitlines() if line.strip()}
    return [f".dockerignore: does not exclude {name}" for name in DOCKERIGNORE_REQUIRED if name not in entries]
