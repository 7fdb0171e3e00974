"""Static checks of the deployment files: compose, Dockerfile, Prometheus, Grafana and Kubernetes.

Nothing here needs Docker or a cluster. The promtool (2.x and 3.x) and `docker compose config`
checks run only when those tools are there and are skipped (with the reason) otherwise; in CI a
missing promtool fails.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from streams.settings import Settings
from streams.worker import openapi
from streams.worker.metrics import Metrics
from tests import node_tools

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
K8S = DEPLOY / "k8s"
TIERSTREAM_DOCKERFILE = "deploy/Dockerfile"
REQUIRED_SERVICES = {"kafka", "redis", "topics", "worker-1", "worker-2", "kafka-exporter",
                     "prometheus", "grafana", "simulator"}
# The port the web server listens on when TIERSTREAM_WEB_PORT is not set.
DEFAULT_WEB_PORT = 6066
# Metrics of danielqsj/kafka_exporter that rules and dashboards may use, and Prometheus' own.
KAFKA_EXPORTER_METRICS = {
    "kafka_brokers", "kafka_topic_partitions", "kafka_topic_partition_current_offset",
    "kafka_topic_partition_oldest_offset", "kafka_topic_partition_in_sync_replica",
    "kafka_topic_partition_under_replicated_partition", "kafka_consumergroup_current_offset",
    "kafka_consumergroup_current_offset_sum", "kafka_consumergroup_lag",
    "kafka_consumergroup_lag_sum", "kafka_consumergroup_members",
}
PROMETHEUS_METRICS = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
SAMPLE_SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",),
                   "histogram": ("_bucket", "_count", "_sum", "_created"),
                   "summary": ("", "_count", "_sum", "_created")}


# ---- helpers ----------------------------------------------------------------------------------

def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def k8s_documents() -> Iterator[tuple[Path, dict]]:
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                yield path, doc


def k8s_object(kind: str, name: str | None = None) -> dict:
    found = [doc for _, doc in k8s_documents()
             if doc["kind"] == kind and name in (None, doc["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''} in deploy/k8s, found {len(found)}"
    return found[0]


def env_names_of(model: type[BaseSettings]) -> set[str]:
    """Environment variable names a settings model reads: prefix + field, or the field's aliases."""
    prefix = model.model_config.get("env_prefix", "")
    names: set[str] = set()
    for field_name, field in model.model_fields.items():
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseSettings):
            names |= env_names_of(nested)
            continue
        alias = field.validation_alias
        choices = getattr(alias, "choices", None)
        if choices is not None:
            names |= {choice for choice in choices if isinstance(choice, str)}
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(f"{prefix}{field_name}".upper())
    return names


SETTING_NAMES = env_names_of(Settings)


def unknown_settings(env: dict[str, Any], all_keys: bool) -> list[str]:
    """Keys that look like (or, with all_keys, should be) tierstream settings but are none."""
    return sorted(key for key in env if (all_keys or key.startswith("TIERSTREAM_"))
                  and key not in SETTING_NAMES)


def settings_from(monkeypatch: pytest.MonkeyPatch, env: dict[str, Any]) -> Settings:
    """Settings as a container with exactly this environment would read them."""
    for key in list(os.environ):
        if key.upper().startswith("TIERSTREAM_") or key.upper() == "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    return Settings()


def web_port(env: dict[str, Any]) -> int:
    field = Settings.model_fields.get("web_port")
    default = field.default if field is not None else DEFAULT_WEB_PORT
    return int(env.get("TIERSTREAM_WEB_PORT", default))


def known_metric_names() -> set[str]:
    """Every sample name a worker can export (streams/worker/metrics.py), kafka-exporter's, `up`."""
    names = set(KAFKA_EXPORTER_METRICS | PROMETHEUS_METRICS)
    for family in Metrics.create().registry.collect():
        names |= {family.name + suffix for suffix in SAMPLE_SUFFIXES[family.type]}
    return names


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                "unless", "bool", "offset", "inf", "nan"}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, labels or words."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\$\{?\w+\}?", "", expr)
    found = re.findall(r"(?<![\w.:])([A-Za-z_:][\w:]*)\b(?!\s*\()", expr)
    return {name for name in found if name.lower() not in PROMQL_WORDS}


def compose() -> dict:
    return load_yaml(COMPOSE)


def service_env(service: dict) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


def is_tierstream(service: dict) -> bool:
    build = service.get("build")
    dockerfile = build.get("dockerfile") if isinstance(build, dict) else None
    return dockerfile == TIERSTREAM_DOCKERFILE


def tierstream_services() -> dict[str, dict]:
    return {name: svc for name, svc in compose()["services"].items() if is_tierstream(svc)}


def workers() -> dict[str, dict]:
    return {name: svc for name, svc in tierstream_services().items()
            if list(svc.get("command") or []) == ["worker"]}


def port_pairs(service: dict) -> list[tuple[int, int]]:
    """(host, container) pairs of a compose service's published ports."""
    pairs = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            pairs.append((int(entry["published"]), int(entry["target"])))
        else:
            *_, host, container = str(entry).split(":")
            pairs.append((int(host), int(container.split("/")[0])))
    return pairs


def dashboard_panels(panels: list[dict]) -> Iterator[dict]:
    for panel in panels:
        yield panel
        yield from dashboard_panels(panel.get("panels", []))


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of deploy/Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines()]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
            for line in lines if line and not line.startswith("#")]


# ---- compose ----------------------------------------------------------------------------------

def test_compose_has_the_required_services() -> None:
    services = compose()["services"]
    assert REQUIRED_SERVICES <= set(services), REQUIRED_SERVICES - set(services)
    assert set(workers()) == {"worker-1", "worker-2"}
    assert services["simulator"].get("profiles") == ["simulator"]
    assert services["topics"].get("restart") == "no"


def test_compose_host_paths_exist() -> None:
    for name, service in compose()["services"].items():
        build = service.get("build")
        if build is not None:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            assert context.is_dir(), f"{name}: build context {context} missing"
            if isinstance(build, dict) and "dockerfile" in build:
                assert (context / build["dockerfile"]).is_file(), f"{name}: no Dockerfile"
        for volume in service.get("volumes", []):
            source = volume.get("source") if isinstance(volume, dict) else volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: mounted path {source} missing"


def test_compose_workers_depend_on_topics_and_redis() -> None:
    for name, service in workers().items():
        depends = service["depends_on"]
        assert depends["topics"]["condition"] == "service_completed_successfully", name
        assert depends["redis"]["condition"] == "service_healthy", name
    topics = compose()["services"]["topics"]
    assert topics["command"] == ["topics", "create"]
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", sorted(REQUIRED_SERVICES & {"topics", "worker-1", "worker-2",
                                                             "simulator"}))
def test_compose_tierstream_env_names_are_settings(name: str) -> None:
    service = compose()["services"][name]
    assert is_tierstream(service), f"{name} is not built from {TIERSTREAM_DOCKERFILE}"
    unknown = unknown_settings(service_env(service), all_keys=True)
    assert not unknown, f"{name}: not settings in streams/settings.py: {unknown}"


def test_compose_no_unknown_tierstream_env_elsewhere() -> None:
    for name, service in compose()["services"].items():
        unknown = unknown_settings(service_env(service), all_keys=False)
        assert not unknown, f"{name}: not settings in streams/settings.py: {unknown}"


def test_compose_worker_ports_match_the_web_port() -> None:
    host_ports = []
    for name, service in workers().items():
        env = service_env(service)
        assert env.get("TIERSTREAM_WEB_HOST") == "0.0.0.0", f"{name} must listen on 0.0.0.0"
        pairs = port_pairs(service)
        assert pairs, f"{name} publishes no port"
        for host, container in pairs:
            assert container == web_port(env), f"{name}: {host}:{container} is not the web port"
            host_ports.append(host)
    assert sorted(host_ports) == [6066, 6067]


@pytest.mark.parametrize("name", ["topics", "worker-1", "worker-2"])
def test_compose_env_validates_as_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings_from(monkeypatch, service_env(compose()["services"][name]))


def test_compose_workers_canonical_url_is_their_service() -> None:
    for name, service in workers().items():
        env = service_env(service)
        assert env.get("TIERSTREAM_CANONICAL_URL") == f"http://{name}:{web_port(env)}", name


@pytest.mark.parametrize("name", ["topics", "worker-1", "worker-2", "simulator"])
def test_compose_commands_exist_in_the_cli(name: str, capsys: pytest.CaptureFixture) -> None:
    from streams.cli.main import main
    command = list(compose()["services"][name]["command"])
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    capsys.readouterr()
    assert exit_info.value.code == 0, f"{name}: `tierstream {' '.join(command)}` is no command"


# ---- Dockerfile -------------------------------------------------------------------------------

def test_dockerfile_copies_every_package_and_nothing_ignored() -> None:
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    top_level = {name.split(".")[0] for name in packages["tool"]["setuptools"]["packages"]}
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    copied = set()
    for instruction, args in dockerfile_instructions():
        if instruction != "COPY" or "--from=" in args:
            continue
        *sources, _ = args.split()
        for source in sources:
            path = source.rstrip("/")
            assert (ROOT / path).exists(), f"COPY {source}: no such path in the repository"
            hits = [pattern for pattern in ignored if fnmatch.fnmatch(path, pattern.rstrip("/"))]
            assert not hits, f"COPY {source} is excluded by .dockerignore {hits}"
            copied.add(path)
    assert top_level <= copied, f"packages not copied into the image: {top_level - copied}"


def test_dockerfile_runtime_contract() -> None:
    instructions = dockerfile_instructions()
    args = {name: [a for i, a in instructions if i == name] for name, _ in instructions}
    assert args["EXPOSE"][-1] == str(DEFAULT_WEB_PORT)
    assert args["USER"][-1].split(":")[0] == "10001"
    assert json.loads(args["ENTRYPOINT"][-1]) == ["tierstream"]
    assert json.loads(args["CMD"][-1]) == ["worker"]
    assert "/health" in args["HEALTHCHECK"][-1]
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(args["ENV"])))
    assert env["TIERSTREAM_DATA_DIR"] == "/var/lib/tierstream"
    assert env["TIERSTREAM_WEB_HOST"] == "0.0.0.0"
    unknown = unknown_settings(env, all_keys=False)
    assert not unknown, f"Dockerfile ENV: not settings in streams/settings.py: {unknown}"


# ---- Prometheus -------------------------------------------------------------------------------

def test_prometheus_targets_are_compose_services() -> None:
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    services = compose()["services"]
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS / rule_file).is_file(), rule_file
    jobs = {job["job_name"]: [target for static in job.get("static_configs", [])
                              for target in static["targets"]]
            for job in config["scrape_configs"]}
    for job, targets in jobs.items():
        for target in targets:
            host = target.split(":")[0]
            assert host == "localhost" or host in services, f"{job}: no service {host}"
    worker_targets = {f"{name}:{web_port(service_env(svc))}" for name, svc in workers().items()}
    assert set(jobs["tierstream"]) == worker_targets
    assert "kafka-exporter:9308" in jobs["kafka-exporter"]


def alert_rules() -> list[dict]:
    groups = load_yaml(PROMETHEUS / "alerts.yml")["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_alert_rules_are_complete() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert {"TierstreamConsumerLagHigh", "TierstreamDeadLetterRateHigh", "TierstreamNoEvents",
            "TierstreamRedisBacklog", "TierstreamRedisErrors", "TierstreamWorkerDown"} <= set(rules)
    for name, rule in rules.items():
        assert rule.get("for"), f"{name} has no `for`"
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert {"summary", "description"} <= set(rule["annotations"]), name


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_exprs_use_known_metrics(rule: dict) -> None:
    names = promql_metric_names(rule["expr"])
    assert names, f"no metric found in {rule['expr']!r}"
    assert names <= known_metric_names(), f"unknown metrics: {names - known_metric_names()}"


# The promtool of Prometheus 2 (Debian's) and of Prometheus 3, which .ci/run builds from the Go
# module proxy: `go install -tags remove_all_sd
# github.com/prometheus/prometheus/cmd/promtool@v0.316.0` with GOBIN=.cache/promtool3.
PROMTOOLS = {"2": ("promtool", "Debian: apt-get install prometheus"),
             "3": (str(ROOT / ".cache" / "promtool3" / "promtool"), "bash .ci/run builds it")}


def promtool(major: str, *args: str) -> None:
    command, how = PROMTOOLS[major]
    if shutil.which(command) is None:
        if os.environ.get("CI"):  # .ci/run installs both: never skip the check in CI
            pytest.fail(f"promtool {major}.x not found in CI ({how})")
        pytest.skip(f"promtool {major}.x not found ({how})")
    result = subprocess.run([command, *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("major", sorted(PROMTOOLS))
def test_promtool_check_config(major: str) -> None:
    promtool(major, "check", "config", "deploy/prometheus/prometheus.yml")


@pytest.mark.parametrize("major", sorted(PROMTOOLS))
def test_promtool_check_rules(major: str) -> None:
    promtool(major, "check", "rules", "deploy/prometheus/alerts.yml")


@pytest.mark.parametrize("major", sorted(PROMTOOLS))
def test_promtool_test_rules(major: str) -> None:
    promtool(major, "test", "rules", "deploy/prometheus/alerts.test.yml")


# ---- Grafana ----------------------------------------------------------------------------------

def test_grafana_dashboard_imports_anywhere_and_uses_known_metrics() -> None:
    provider = load_yaml(GRAFANA / "provisioning/dashboards/tierstream.yml")["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    dashboard = json.loads((GRAFANA / "dashboards/tierstream.json").read_text(encoding="utf-8"))
    assert dashboard["uid"] == "tierstream"
    # imported into an existing Grafana: the data source is asked for (__inputs) and chosen by
    # a variable, the job and the workers too
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) == {"datasource", "job", "instance"}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["current"]["value"] == "${DS_PROMETHEUS}"
    assert variables["job"]["current"]["value"] == "tierstream"  # the compose and k8s job
    known, exprs = known_metric_names(), 0
    for panel in dashboard_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            names = promql_metric_names(target["expr"])
            assert names and names <= known, f"{panel['title']}: {target['expr']!r}"
            for name in re.findall(r"\b(?:tierstream_[a-z_]+|up)\b(?!\()", target["expr"]):
                assert f'{name}{{job=~"$job", instance=~"$instance"' in target["expr"], name
            exprs += 1
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    assert exprs >= 10


def test_promql_metric_names_extraction() -> None:
    expr = ('histogram_quantile(0.99, sum by (le) (rate(tierstream_processing_seconds_bucket'
            '{job="x", le!="+Inf"}[$__rate_interval]))) / on(instance) up offset 5m > 1e3')
    assert promql_metric_names(expr) == {"tierstream_processing_seconds_bucket", "up"}


# ---- Kubernetes -------------------------------------------------------------------------------

def test_k8s_manifests_parse() -> None:
    documents = list(k8s_documents())
    kinds = {doc["kind"] for _, doc in documents}
    assert {"Namespace", "ConfigMap", "Secret", "StatefulSet", "Service", "Job"} <= kinds
    for path, doc in documents:
        assert doc.get("apiVersion") and doc["metadata"].get("name"), path.name
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "tierstream", path.name


@pytest.mark.parametrize("kind", ["ConfigMap", "Secret"])
def test_k8s_env_names_are_settings(kind: str) -> None:
    obj = k8s_object(kind)
    data = obj.get("data") or obj.get("stringData") or {}
    unknown = unknown_settings(data, all_keys=True)
    name = obj["metadata"]["name"]
    assert not unknown, f"{kind} {name}: not settings in streams/settings.py: {unknown}"


def pod_spec(kind: str) -> dict:
    return k8s_object(kind)["spec"]["template"]["spec"]


def test_k8s_settings_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ConfigMap plus the example Secret is a complete, valid Settings (types, choices)."""
    settings = settings_from(monkeypatch, {**k8s_object("ConfigMap")["data"],
                                           **k8s_object("Secret")["stringData"]})
    assert settings.store.startswith("rocksdb://")
    assert settings.web_host == "0.0.0.0"


def test_k8s_statefulset_contract() -> None:
    config = k8s_object("ConfigMap")["data"]
    statefulset = k8s_object("StatefulSet")
    spec, pod = statefulset["spec"], pod_spec("StatefulSet")
    (container,) = pod["containers"]
    assert spec["replicas"] == 2
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    port = web_port(config)
    assert [p["containerPort"] for p in container["ports"] if p["name"] == "http"] == [port]
    for probe, path in (("startupProbe", "/health/live"), ("livenessProbe", "/health/live"),
                        ("readinessProbe", "/health/ready")):
        assert container[probe]["httpGet"]["path"] == path, probe
    served = openapi.document()["paths"]
    assert "/health/live" in served and "/health/ready" in served
    assert config["TIERSTREAM_STORE"].startswith("rocksdb://")
    claims = {claim["metadata"]["name"] for claim in spec["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts[config["TIERSTREAM_DATA_DIR"]] in claims
    assert {"requests", "limits"} <= set(container["resources"])
    headless = k8s_object("Service", spec["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"


def test_k8s_canonical_url_is_the_pods_name_under_the_headless_service() -> None:
    statefulset = k8s_object("StatefulSet")
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item for item in container.get("env", [])}
    unknown = unknown_settings(env, all_keys=False)
    assert not unknown, f"StatefulSet env: not settings in streams/settings.py: {unknown}"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    headless, namespace = statefulset["spec"]["serviceName"], statefulset["metadata"]["namespace"]
    port = web_port(k8s_object("ConfigMap")["data"])
    assert env["TIERSTREAM_CANONICAL_URL"]["value"] == \
        f"http://$(POD_NAME).{headless}.{namespace}.svc.cluster.local:{port}"


@pytest.mark.parametrize("kind", ["StatefulSet", "Job"])
def test_k8s_pods_read_the_configmap_and_secret(kind: str) -> None:
    (container,) = pod_spec(kind)["containers"]
    refs = {(next(iter(ref)), ref[next(iter(ref))]["name"]) for ref in container["envFrom"]}
    assert refs == {("configMapRef", k8s_object("ConfigMap")["metadata"]["name"]),
                    ("secretRef", k8s_object("Secret")["metadata"]["name"])}


def test_k8s_services_and_job() -> None:
    port = web_port(k8s_object("ConfigMap")["data"])
    scraped = k8s_object("Service", "tierstream")
    assert scraped["spec"]["type"] == "ClusterIP"
    assert scraped["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    assert [p["port"] for p in scraped["spec"]["ports"]] == [port]
    (container,) = pod_spec("Job")["containers"]
    assert container["args"] == ["topics", "create"]


# ---- docker compose config --------------------------------------------------------------------

def test_docker_compose_config() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI on PATH")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True,
                           timeout=30, check=False)
    if probe.returncode != 0:
        pytest.skip(f"docker CLI has no compose plugin: {probe.stderr.strip()[:200]}")
    result = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "-q"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def test_ci_runs_every_case_the_stress_marked_fault_injections_included() -> None:
    # pyproject deselects the stress-marked cases for a quick local loop; CI must not
    runs = [shlex.split(line.strip())
            for line in (ROOT / ".ci" / "run").read_text().splitlines()
            if " -m pytest" in line and not line.lstrip().startswith("#")]
    assert runs, ".ci/run runs no pytest"
    args = runs[0][runs[0].index("pytest") + 1:]
    assert "-m" in args and args[args.index("-m") + 1] == "stress or not stress"
    paths = [a for before, a in zip(["pytest", *args[:-1]], args, strict=True)
             if not a.startswith("-") and before not in ("-m", "-p")]
    assert not paths and "-k" not in args, "the first run must not narrow the tests"


# ---- Prometheus Operator ----------------------------------------------------------------------

def operator_object(name: str) -> dict:
    return load_yaml(K8S / "prometheus-operator" / f"{name}.yaml")


def test_service_monitor_scrapes_each_worker_once_as_the_rules_job() -> None:
    monitor = operator_object("servicemonitor")
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1",
                                                        "ServiceMonitor")
    wanted = monitor["spec"]["selector"]["matchLabels"]
    services = [doc for _, doc in k8s_documents() if doc["kind"] == "Service"]
    chosen = [s for s in services if wanted.items() <= s["metadata"]["labels"].items()]
    assert [s["metadata"]["name"] for s in chosen] == ["tierstream"]  # not the headless one
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in chosen[0]["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert {"targetLabel": "job", "replacement": "tierstream"} in endpoint["relabelings"]


def test_the_operator_objects_pass_the_prometheus_operators_crd_schemas() -> None:
    # @kubernetes-models/prometheus-operator: validators generated from the operator's own
    # types (tests/node/monitors.mjs); like the API server, they do not flag unknown fields
    monitors = [operator_object("servicemonitor"), operator_object("podmonitor")]
    assert [m["kind"] for m in monitors] == ["ServiceMonitor", "PodMonitor"]
    broken = json.loads(json.dumps(monitors))
    broken[0]["spec"]["endpoints"][0]["interval"] = "15 seconds"
    del broken[1]["spec"]["selector"]
    results = json.loads(node_tools.run("monitors.mjs", json.dumps(monitors + broken)))
    assert results[:2] == [None, None], results[:2]
    assert "interval must match pattern" in results[2]
    assert "must have required property selector" in results[3]


def test_pod_monitor_scrapes_the_worker_pods_as_the_rules_job() -> None:
    monitor = operator_object("podmonitor")
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "PodMonitor")
    pod = k8s_object("StatefulSet")["spec"]["template"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= \
        pod["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    (container,) = pod["spec"]["containers"]
    assert endpoint["port"] in {p["name"] for p in container["ports"]}
    assert {"targetLabel": "job", "replacement": "tierstream"} in endpoint["relabelings"]
    assert 'job="tierstream"' in (PROMETHEUS / "alerts.yml").read_text()
