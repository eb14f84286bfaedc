"""The Kubernetes manifests (k8s/) and the Dockerfile, checked offline: rendered like kustomize, validated strictly
against the Kubernetes schemas of the oldest and newest supported minor, and checked for what no schema catches."""

from __future__ import annotations

import copy
import shutil
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas.settings import Settings
from tests import k8s_checks as kc
from tests.k8s_checks import Resource

Mutation = Callable[[list[Resource]], None]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Resource]]:
    return {overlay: kc.render(kc.K8S_DIR / "overlays" / overlay) for overlay in kc.OVERLAYS}


@pytest.fixture
def prod(rendered: dict[str, list[Resource]]) -> list[Resource]:
    """A private copy of the prod rendering, free to break."""
    return copy.deepcopy(rendered["prod"])


def _get(resources: list[Resource], kind: str, name: str) -> Resource:
    found = kc.one(resources, kind, name)
    assert found is not None, f"{kind}/{name} not rendered"
    return found


def _worker_container(resources: list[Resource]) -> dict[str, Any]:
    container: dict[str, Any] = kc.pod_template(_get(resources, "Deployment", "worker"))["spec"]["containers"][0]
    return container


# --- rendering --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", kc.OVERLAYS)
def test_overlay_renders_the_whole_deployment(rendered: dict[str, list[Resource]], overlay: str) -> None:
    """Each overlay renders the namespace, config, Redis, the worker with its Service, PDB and policy, and the
    producer template, all in the overlay's namespace."""
    kinds = {kc.resource_id(r) for r in rendered[overlay]}
    expected = {
        "ConfigMap/extract-config",
        "Service/redis",
        "StatefulSet/redis",
        "NetworkPolicy/redis-clients-only",
        "Deployment/worker",
        "Service/worker-metrics",
        "PodDisruptionBudget/worker",
        "CronJob/producer-submit",
    }
    assert expected <= kinds
    namespace = {"dev": "extract-dev", "prod": "extract"}[overlay]
    assert [r["metadata"]["name"] for r in kc.find(rendered[overlay], "Namespace")] == [namespace]
    assert {r["metadata"].get("namespace") for r in rendered[overlay] if r["kind"] != "Namespace"} == {namespace}
    assert "Secret" not in {r["kind"] for r in rendered[overlay]}, "apply -k must never overwrite the real key"


@pytest.mark.parametrize("overlay", kc.OVERLAYS)
def test_render_matches_kubectl_kustomize(rendered: dict[str, list[Resource]], overlay: str) -> None:
    """The Python renderer produces exactly what kustomize does (checked where kubectl is installed)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: the offline renderer is not cross-checked against kustomize here")
    out = subprocess.run(
        [kubectl, "kustomize", str(kc.K8S_DIR / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert kc.canonical(kc.load_yaml_documents(out)) == kc.canonical(rendered[overlay])


def test_renderer_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    """A kustomization feature outside the implemented subset is an error, not silently ignored."""
    (tmp_path / "kustomization.yaml").write_text("resources: []\nnamePrefix: x-\n", encoding="utf-8")
    with pytest.raises(kc.KustomizeError, match="namePrefix"):
        kc.render(tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        "resources: []\npatches:\n  - patch: |-\n      apiVersion: v1\n      kind: ConfigMap\n"
        "      metadata: {name: nope}\n",
        encoding="utf-8",
    )
    with pytest.raises(kc.KustomizeError, match="matches no resource"):
        kc.render(tmp_path)


# --- schemas ----------------------------------------------------------------------------------------------------------


def test_supported_versions_span_old_and_new() -> None:
    """Validation covers the oldest minor we claim and the newest kubernetes-validate bundles."""
    versions = kc.supported_versions()
    assert versions[0] == kc.OLDEST_KUBERNETES
    assert len(versions) == 2, versions


@pytest.mark.parametrize("version", kc.supported_versions())
@pytest.mark.parametrize("overlay", kc.OVERLAYS)
def test_resources_validate_strictly(rendered: dict[str, list[Resource]], overlay: str, version: str) -> None:
    """Every built-in resource is valid for the Kubernetes minor in strict mode; the ScaledObject against ours."""
    problems = [p for r in rendered[overlay] for p in kc.validate_schema(r, version)]
    assert problems == []


@pytest.mark.parametrize("version", kc.supported_versions())
def test_secret_template_validates_strictly(version: str) -> None:
    for secret in kc.load_yaml_documents(kc.SECRET_TEMPLATE.read_text(encoding="utf-8")):
        assert kc.validate_schema(secret, version) == []


def test_strict_validation_rejects_unknown_fields(prod: list[Resource]) -> None:
    """Strict mode is on: a misspelt field fails for built-in kinds and for the ScaledObject."""
    worker = _get(prod, "Deployment", "worker")
    kc.pod_template(worker)["spec"]["terminationGracePeriod"] = 60
    (problem,) = kc.validate_schema(worker, kc.OLDEST_KUBERNETES)
    assert "terminationGracePeriod" in problem
    scaled = _get(prod, "ScaledObject", "worker")
    scaled["spec"]["maxReplicas"] = 3
    scaled["spec"]["triggers"][0]["metadata"]["valueLocaton"] = "x"
    problems = kc.validate_scaledobject(scaled)
    assert any("maxReplicas" in p for p in problems), problems
    assert any("valueLocaton" in p for p in problems), problems


# --- semantic checks --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", kc.OVERLAYS)
def test_semantic_checks_pass(rendered: dict[str, list[Resource]], overlay: str) -> None:
    assert kc.check_all(rendered[overlay]) == []


@pytest.mark.parametrize("overlay", kc.OVERLAYS)
def test_configmap_covers_every_setting(rendered: dict[str, list[Resource]], overlay: str) -> None:
    assert kc.check_settings_coverage(rendered[overlay], Settings.model_fields) == []


def test_env_names_agree_with_settings() -> None:
    """The field -> variable mapping the coverage check uses is the one pydantic-settings reads."""
    for field, env in kc.env_names(Settings.model_fields).items():
        alias = Settings.model_fields[field].validation_alias
        if alias is None:
            assert env == f"EXTRACT_{field.upper()}"
        else:
            assert env in getattr(alias, "choices", [alias]), (field, env, alias)


@pytest.mark.parametrize("overlay", kc.OVERLAYS)
def test_configmap_values_parse_with_settings(
    rendered: dict[str, list[Resource]], overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ConfigMap, as the pod's environment, validates with the real Settings and means what it says."""
    data = kc.configmap_data(rendered[overlay])
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("OPENAI_API_KEY", "placeholder")
    monkeypatch.setenv("EXTRACT_WORKER_NAME", "worker-abc-123")
    settings = Settings()
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.key_prefix + "queue" == "extract:queue"
    assert settings.concurrency == int(data["EXTRACT_CONCURRENCY"])
    assert (settings.rpm, settings.tpm) == (5000, 4_000_000)
    assert settings.rate_limits == {}
    assert settings.prices == {}
    assert settings.schema_spec == "invoice"
    assert settings.model == "gpt-4o-mini"
    assert settings.worker_name == "worker-abc-123"
    assert settings.burst is False
    assert settings.max_output_tokens is None
    assert settings.temperature is None


def test_sizing_arithmetic_is_the_documented_one(rendered: dict[str, list[Resource]]) -> None:
    """The numbers in worker-scaledobject.yaml and k8s/README.md: 32.7 requests/s, 131 in flight, 7 pods."""
    resources = rendered["prod"]
    size = kc.sizing(resources, _get(resources, "ScaledObject", "worker"))
    assert round(size.requests_per_s, 1) == 32.7
    assert round(size.in_flight) == 131
    assert size.replicas == 7 == _get(resources, "ScaledObject", "worker")["spec"]["maxReplicaCount"]
    readme = (kc.K8S_DIR / "README.md").read_text(encoding="utf-8")
    for figure in ("32.7 requests/s", "32.7 × 4 = 131", "ceil(6.1) = 7"):
        assert figure in readme


def test_dev_overlay(rendered: dict[str, list[Resource]]) -> None:
    """dev: one worker, no KEDA, locally loaded images, smaller requests than prod."""
    dev, prod = rendered["dev"], rendered["prod"]
    assert _get(dev, "Deployment", "worker")["spec"]["replicas"] == 1
    assert kc.find(dev, "ScaledObject") == []
    assert {c.get("imagePullPolicy") for c in kc.iter_containers(dev)} == {"IfNotPresent"}
    dev_mem = kc.parse_quantity(_worker_container(dev)["resources"]["requests"]["memory"])
    assert dev_mem < kc.parse_quantity(_worker_container(prod)["resources"]["requests"]["memory"])


def test_prod_overlay(rendered: dict[str, list[Resource]]) -> None:
    """prod: at least two workers under KEDA, release images (a version tag or a digest, never a dev tag)."""
    prod = rendered["prod"]
    scaled = _get(prod, "ScaledObject", "worker")
    assert scaled["spec"]["minReplicaCount"] >= 2
    assert "replicas" not in _get(prod, "Deployment", "worker")["spec"]
    for container in kc.iter_containers(prod):
        ref = kc.ImageRef.parse(container["image"])
        assert ref.digest or (ref.tag and ref.tag[0].isdigit() and "dev" not in ref.tag), container["image"]


def test_producer_template_runs_a_valid_submit(rendered: dict[str, list[Resource]]) -> None:
    """The producer template is suspended, mounts the input, and its arguments are options `producer submit` has."""
    from producer.cli import main as producer_main

    cron = _get(rendered["prod"], "CronJob", "producer-submit")
    assert cron["spec"]["suspend"] is True
    job = cron["spec"]["jobTemplate"]["spec"]
    # A submit resumes from the batch's feed cursor, so a pod that died is simply started again, and the Job has no
    # deadline: it feeds the batch for as long as the batch runs.
    assert job["backoffLimit"] >= 1
    assert "activeDeadlineSeconds" not in job
    container = job["template"]["spec"]["containers"][0]
    assert container["command"] == ["producer"]
    assert container["args"][:6] == ["run", "/input/input.jsonl", "--schema", "invoice", "--model", "gpt-4o-mini"]
    assert container["args"][6:] == ["--batch-id", "$(BATCH_ID)"]
    (batch_id,) = (e for e in container["env"] if e["name"] == "BATCH_ID")
    assert batch_id["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['batch.kubernetes.io/job-name']"
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/input")
    volume = next(v for v in job["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == "batch-input"
    run = producer_main.commands["run"]
    options = {opt for param in run.params for opt in getattr(param, "opts", [])}
    assert {"--schema", "--model", "--batch-id"} <= options
    # No --out: the Job ends once the workers wrote every result line to the bucket the ConfigMap names.
    assert "--out" not in container["args"]
    config = _get(rendered["prod"], "ConfigMap", "extract-config")
    assert config["data"]["EXTRACT_RESULTS"].startswith("s3://")
    assert {"secretRef": {"name": "results-store", "optional": True}} in container["envFrom"]


def test_secret_template_is_a_placeholder_the_worker_uses(rendered: dict[str, list[Resource]]) -> None:
    secret, store = kc.load_yaml_documents(kc.SECRET_TEMPLATE.read_text(encoding="utf-8"))
    assert kc.check_secrets([secret, store]) == []
    assert set(store["stringData"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert {"secretRef": {"name": "results-store", "optional": True}} in _worker_container(rendered["prod"])["envFrom"]
    ref = next(e for e in _worker_container(rendered["prod"])["env"] if e["name"] == "OPENAI_API_KEY")
    key_ref = ref["valueFrom"]["secretKeyRef"]
    assert key_ref["name"] == secret["metadata"]["name"]
    assert key_ref["key"] in secret["stringData"]


def test_commands_exist_in_the_package() -> None:
    """The image's entrypoint `worker` and the Job's `producer` are console scripts of the project."""
    scripts = tomllib.loads((kc.ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert {"worker", "producer"} <= set(scripts)


# --- the checks catch what they should --------------------------------------------------------------------------------


def _worker(resources: list[Resource]) -> Resource:
    return _get(resources, "Deployment", "worker")


def _set_env(resources: list[Resource], container: str, name: str, value: str) -> None:
    sts = _get(resources, "StatefulSet", "redis")
    for c in kc.pod_template(sts)["spec"]["containers"]:
        if c["name"] == container:
            next(e for e in c["env"] if e["name"] == name)["value"] = value


def _redis_args(resources: list[Resource]) -> list[str]:
    args: list[str] = kc.pod_template(_get(resources, "StatefulSet", "redis"))["spec"]["containers"][0]["args"]
    return args


BREAKAGES: dict[str, tuple[Mutation, str]] = {
    "queue read limit below the fleet's running jobs": (
        lambda r: _get(r, "ConfigMap", kc.CONFIGMAP)["data"].update(EXTRACT_QUEUE_READ_LIMIT="100"),
        "idle pods would not see due jobs",
    ),
    "selector mismatch": (
        lambda r: _worker(r)["spec"]["selector"]["matchLabels"].update({"app.kubernetes.io/component": "wrker"}),
        "spec.selector",
    ),
    "missing resources": (
        lambda r: _worker_container(r).pop("resources"),
        "container 'worker' has no resources.requests for cpu, memory",
    ),
    "missing limits": (
        lambda r: _worker_container(r)["resources"].pop("limits"),
        "has no resources.limits for cpu, memory",
    ),
    "latest image": (
        lambda r: _worker_container(r).update(image="registry.example.com/structured-extract:latest"),
        "uses :latest",
    ),
    "untagged image": (
        lambda r: kc.pod_template(_get(r, "StatefulSet", "redis"))["spec"]["containers"][0].update(image="redis"),
        "has no tag",
    ),
    "grace period too short": (
        lambda r: kc.pod_template(_worker(r))["spec"].update(terminationGracePeriodSeconds=40),
        "terminationGracePeriodSeconds 40 < EXTRACT_JOB_COMPLETION_WAIT_S 30",
    ),
    "drain longer than grace": (
        lambda r: _get(r, "ConfigMap", "extract-config")["data"].update(EXTRACT_JOB_COMPLETION_WAIT_S="55"),
        "terminationGracePeriodSeconds 60 < EXTRACT_JOB_COMPLETION_WAIT_S 55",
    ),
    "probe on undeclared port": (
        lambda r: _worker_container(r)["readinessProbe"]["httpGet"].update(port="http"),
        "readinessProbe uses port 'http', which the container does not declare",
    ),
    "metrics port differs from setting": (
        lambda r: _get(r, "ConfigMap", "extract-config")["data"].update(EXTRACT_METRICS_PORT="9200"),
        "must equal EXTRACT_METRICS_PORT (9200)",
    ),
    "service selects nothing": (
        lambda r: _get(r, "Service", "worker-metrics")["spec"]["selector"].update({"app.kubernetes.io/name": "x"}),
        "must select the pods of exactly one workload",
    ),
    "pdb selects redis": (
        lambda r: _get(r, "PodDisruptionBudget", "worker")["spec"].update(
            selector={"matchLabels": {"app.kubernetes.io/name": "redis"}}
        ),
        "does not select the pods of Deployment/worker",
    ),
    "scaledobject targets another deployment": (
        lambda r: _get(r, "ScaledObject", "worker")["spec"]["scaleTargetRef"].update(name="workers"),
        "scaleTargetRef",
    ),
    "replicas fight the autoscaler": (
        lambda r: _worker(r)["spec"].update(replicas=3),
        "owns the replica count",
    ),
    "maxReplicaCount drifts from the rate limit": (
        lambda r: _get(r, "ScaledObject", "worker")["spec"].update(maxReplicaCount=20),
        "maxReplicaCount 20 does not follow from the rate limit",
    ),
    "tpm raised without resizing": (
        lambda r: _get(r, "ConfigMap", "extract-config")["data"].update(EXTRACT_TPM="10000000"),
        "does not follow from the rate limit",
    ),
    "scale-down churn": (
        lambda r: _get(r, "ScaledObject", "worker")["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"][
            "scaleDown"
        ].update(stabilizationWindowSeconds=60),
        "stabilizationWindowSeconds must be >= 300",
    ),
    "metrics url in another namespace": (
        lambda r: _get(r, "ScaledObject", "worker")["spec"]["triggers"][0]["metadata"].update(
            url="http://worker-metrics.default.svc.cluster.local:9100/metrics"
        ),
        "must name the namespace 'extract'",
    ),
    "networkpolicy forgets the producer": (
        lambda r: _get(r, "NetworkPolicy", "redis-clients-only")["spec"]["ingress"][0]["from"].pop(),
        "does not admit the producer pods of CronJob/producer-submit",
    ),
    "networkpolicy admits everyone": (
        lambda r: _get(r, "NetworkPolicy", "redis-clients-only")["spec"]["ingress"][0]["from"].append(
            {"namespaceSelector": {}}
        ),
        "admits more than this namespace's clients",
    ),
    "real-looking key": (
        lambda r: r.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "leak"},
                "stringData": {"OPENAI_API_KEY": "sk-" + "a1B2c3D4e5" * 3},
            }
        ),
        "Secret/leak: holds a real-looking API key",
    ),
    "writable root filesystem": (
        lambda r: _worker_container(r)["securityContext"].update(readOnlyRootFilesystem=False),
        "readOnlyRootFilesystem must be true",
    ),
    "root user": (
        lambda r: kc.pod_template(_worker(r))["spec"]["securityContext"].update(runAsNonRoot=False),
        "runAsNonRoot must be true",
    ),
    "redis fsync always": (
        lambda r: _redis_args(r).__setitem__(_redis_args(r).index("everysec"), "always"),
        "needs `--appendfsync everysec`",
    ),
    "redis may evict": (
        lambda r: _redis_args(r).__setitem__(_redis_args(r).index("noeviction"), "allkeys-lru"),
        "needs `--maxmemory-policy noeviction`",
    ),
    "redis maxmemory above its limit": (
        lambda r: _set_env(r, "redis", "REDIS_MAXMEMORY", "4gb"),
        "exceeds 75% of the memory limit",
    ),
    "redis url to nowhere": (
        lambda r: _get(r, "ConfigMap", "extract-config")["data"].update(REDIS_URL="redis://redis-master:6379/0"),
        "does not point at a Service",
    ),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_checks_catch_a_broken_copy(prod: list[Resource], breakage: str) -> None:
    """Each deliberate breakage of a rendered copy fails the checks with a message naming it."""
    mutate, expected = BREAKAGES[breakage]
    assert kc.check_all(prod) == []
    mutate(prod)
    problems = kc.check_all(prod)
    assert any(expected in p for p in problems), f"expected {expected!r} in {problems}"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.pop("EXTRACT_CONCURRENCY"), "Settings.concurrency (EXTRACT_CONCURRENCY) is not set"),
        (lambda d: d.update(EXTRACT_CONCURENCY="8"), "EXTRACT_CONCURENCY is not a setting"),
        (lambda d: d.update(OPENAI_API_KEY="x"), "OPENAI_API_KEY must not be here"),
        (lambda d: d.pop("REDIS_URL"), "Settings.redis_url (REDIS_URL) is not set"),
    ],
)
def test_coverage_check_catches_gaps(
    prod: list[Resource], mutate: Callable[[dict[str, str]], object], expected: str
) -> None:
    mutate(_get(prod, "ConfigMap", "extract-config")["data"])
    problems = kc.check_settings_coverage(prod, Settings.model_fields)
    assert any(expected in p for p in problems), problems


def test_broken_copy_of_the_tree_fails(tmp_path: Path) -> None:
    """A copy of k8s/ with a selector mismatch, a worker without resources and a :latest image renders but fails."""
    tree = tmp_path / "k8s"
    shutil.copytree(kc.K8S_DIR, tree)
    worker_file = tree / "base" / "worker.yaml"
    deployment, service = kc.load_yaml_documents(worker_file.read_text(encoding="utf-8"))
    deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] = "wrker"
    del deployment["spec"]["template"]["spec"]["containers"][0]["resources"]
    worker_file.write_text(yaml.safe_dump_all([deployment, service]), encoding="utf-8")
    kustomization = tree / "overlays" / "prod" / "kustomization.yaml"
    kust = yaml.safe_load(kustomization.read_text(encoding="utf-8"))
    kust["images"][0]["newTag"] = "latest"
    kust["patches"] = [p for p in kust["patches"] if p["path"] != "patch-worker.yaml"]
    kustomization.write_text(yaml.safe_dump(kust), encoding="utf-8")

    problems = kc.check_all(kc.render(tree / "overlays" / "prod"))
    for expected in (
        "Deployment/worker: spec.selector",
        "Deployment/worker: container 'worker' has no resources.requests",
        "Deployment/worker: container 'worker' image 'registry.example.com/structured-extract:latest' uses :latest",
        "CronJob/producer-submit: container 'producer' image 'registry.example.com/structured-extract:latest'",
    ):
        assert any(p.startswith(expected) for p in problems), f"{expected!r} not in {problems}"


# --- Dockerfile -------------------------------------------------------------------------------------------------------


def test_dockerfile() -> None:
    assert kc.check_dockerfile((kc.ROOT / "Dockerfile").read_text(encoding="utf-8")) == []
    assert kc.check_dockerignore((kc.ROOT / ".dockerignore").read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('ENTRYPOINT ["worker"]', "ENTRYPOINT worker", "is shell form"),
        ('CMD ["run"]', "CMD run", "CMD 'run' is shell form"),
        ("USER 10001:10001", "USER root", "final USER 'root' is root"),
        ("USER 10001:10001", "", "has no USER"),
        ("    PYTHONUNBUFFERED=1 \\\n", "", "PYTHONUNBUFFERED=1 missing"),
        ("WORKDIR /tmp\n", "WORKDIR /tmp\nENV OPENAI_API_KEY=sk-abc\n", "ENV OPENAI_API_KEY holds a value"),
        ("WORKDIR /tmp\n", 'WORKDIR /tmp\nENV HF_TOKEN "abc"\n', "ENV HF_TOKEN holds a value"),
        ("FROM python:3.11-slim AS runtime", "FROM python:latest AS runtime", "is not pinned"),
        ("COPY --from=builder /opt/venv /opt/venv", "", "copies nothing from the builder"),
    ],
)
def test_dockerfile_check_catches(old: str, new: str, expected: str) -> None:
    text = (kc.ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert old in text
    problems = kc.check_dockerfile(text.replace(old, new))
    assert any(expected in p for p in problems), problems


def test_single_stage_dockerfile_fails() -> None:
    problems = kc.check_dockerfile('FROM python:3.11-slim\nUSER 10001\nENTRYPOINT ["worker"]\nCMD ["run"]\n')
    assert any("not multi-stage" in p for p in problems), problems


def test_dockerignore_check_catches() -> None:
    assert kc.check_dockerignore(".git\nresults\n") != []
