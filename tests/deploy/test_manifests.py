"""deploy/compose.yaml and deploy/k8s/: they parse, and they keep the rules a cluster needs.

Migrations before replicas, readiness on /readyz and liveness on /healthz, a stop that leaves
the relay its drain, no secret inline, an unprivileged read-only container, nginx given what
its template needs, and every ``ERP_RELAY_*`` name a real setting (a typo is silently ignored
by the relay, so it is caught here).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from relay.settings import RelaySettings
from tests.deploy.dockerfile import runtime_stage
from tests.deploy.nginx_process import SITE_TEMPLATE, placeholders

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
SERVICES: dict[str, Any] = COMPOSE["services"]
RELAYS = ("relay-1", "relay-2")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$|DATABASE_URL|REDIS_URL", re.IGNORECASE)
IMAGE_UID = int(runtime_stage().last("USER").split(":")[0])


def setting_names() -> set[str]:
    return {f"ERP_RELAY_{name.upper()}" for name in RelaySettings.model_fields}


def default(name: str) -> Any:
    return RelaySettings.model_fields[name].default


def duration_s(value: str | int) -> float:
    if isinstance(value, int):
        return value
    total = 0.0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", value):
        total += float(amount) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def interpolated(value: str) -> str:
    """A Compose value with ``${NAME:-default}`` replaced by its default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))


# Compose


def test_compose_has_the_cluster() -> None:
    assert set(SERVICES) >= {"postgres", "redis", "migrate", *RELAYS, "nginx"}


def test_replicas_start_after_the_migration() -> None:
    migrate = SERVICES["migrate"]
    assert migrate["command"] == ["db", "upgrade"]
    assert migrate["restart"] == "no"
    for name in RELAYS:
        relay = SERVICES[name]
        assert relay["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert relay["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert relay["depends_on"]["redis"]["condition"] == "service_healthy"
        assert "command" not in relay  # the image's: erp-relay serve
        assert relay["image"] == migrate["image"]
        assert relay["build"] == migrate["build"]
    assert (DEPLOY / SERVICES["migrate"]["build"]["context"]).resolve() == ROOT
    assert SERVICES["migrate"]["build"]["dockerfile"] == "deploy/Dockerfile"


def test_every_long_running_service_has_a_health_check() -> None:
    for name, service in SERVICES.items():
        if name == "migrate":
            assert service["healthcheck"] == {"disable": True}
            continue
        test = service["healthcheck"]["test"]
        assert test and test[0] in ("CMD", "CMD-SHELL"), name
    for name in RELAYS:
        assert any("/readyz" in part for part in SERVICES[name]["healthcheck"]["test"])


def test_a_stop_leaves_the_relay_its_drain() -> None:
    for name in RELAYS:
        relay = SERVICES[name]
        grace = float(relay["environment"]["ERP_RELAY_SHUTDOWN_GRACE_S"])
        assert relay["stop_signal"] == "SIGTERM"
        # uvicorn itself waits shutdown grace + 5 s (relay/server.py)
        assert duration_s(relay["stop_grace_period"]) > grace + 5


def test_no_secret_is_written_in_compose() -> None:
    for name, service in SERVICES.items():
        for key, value in service.get("environment", {}).items():
            text = str(value)
            if not text.startswith("/"):  # a path to a secret (a key file) is no secret
                assert not SECRET_NAME.search(key), f"{name}: {key} belongs in an env file"
            assert not re.search(r"://[^/@\s]*:[^/@\s]*@", text), f"{name}: {key} has a password"
    for name in ("postgres", "redis", "migrate", *RELAYS):
        for env_file in SERVICES[name]["env_file"]:
            example = DEPLOY / f"{env_file}.example"
            assert example.is_file(), example
    ignored = (DEPLOY / ".gitignore").read_text(encoding="utf-8").split()
    assert "env/*.env" in ignored


def test_env_files_and_environment_name_real_settings() -> None:
    known = setting_names()
    for name in ("migrate", *RELAYS):
        for key in SERVICES[name]["environment"]:
            assert key in known, f"{name}: {key} is not a relay setting"
    example = (DEPLOY / "env" / "relay.env.example").read_text(encoding="utf-8")
    keys = re.findall(r"^#?\s*(ERP_RELAY_\w+)=", example, re.MULTILINE)
    assert {"ERP_RELAY_DATABASE_URL", "ERP_RELAY_REDIS_URL"} <= set(keys)
    assert set(keys) <= known, set(keys) - known


def test_relays_are_unprivileged_and_read_only() -> None:
    for name in RELAYS:
        relay = SERVICES[name]
        assert relay["read_only"] is True
        assert relay["cap_drop"] == ["ALL"]
        assert "ERP_RELAY_REPLICA_ID" not in relay["environment"]  # unique per start


def test_nginx_gets_what_its_template_needs() -> None:
    nginx = SERVICES["nginx"]
    environment = {key: interpolated(value) for key, value in nginx["environment"].items()}
    assert placeholders(SITE_TEMPLATE.read_text(encoding="utf-8")) <= set(environment)
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in nginx["volumes"]}
    template = mounts["/etc/nginx/templates/erp-relay.conf.template"]
    assert (DEPLOY / template).resolve() == SITE_TEMPLATE
    assert any(environment["NGINX_TLS_CERTIFICATE"].startswith(f"{inside}/") for inside in mounts)
    addresses = {
        name: SERVICES[name]["networks"]["backend"]["ipv4_address"] for name in (*RELAYS, "nginx")
    }
    port = RelaySettings.model_fields["port"].default
    assert environment["RELAY_1"] == f"{addresses['relay-1']}:{port}"
    assert environment["RELAY_2"] == f"{addresses['relay-2']}:{port}"
    for name in RELAYS:
        relay_env = SERVICES[name]["environment"]
        trusted = yaml.safe_load(relay_env["ERP_RELAY_TRUSTED_PROXIES"])
        assert trusted == [addresses["nginx"]]
        assert (
            interpolated(relay_env["ERP_RELAY_MAX_BODY_BYTES"])
            == environment["ERP_RELAY_MAX_BODY_BYTES"]
        )
    assert environment["ERP_RELAY_MAX_BODY_BYTES"] == str(default("max_body_bytes"))
    assert nginx["ports"] == ["443:443"]
    assert environment["NGINX_LISTEN"] == "443"


# Kubernetes


def k8s_documents() -> list[dict[str, Any]]:
    documents = []
    for path in sorted(K8S.rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert isinstance(document, dict), path
            assert "kind" in document and "apiVersion" in document, path
            documents.append(document)
    return documents


DOCUMENTS = k8s_documents()


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d
        for d in DOCUMENTS
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"{kind} {name}: {len(found)}"
    return found[0]


DEPLOYMENT = one("Deployment")
POD = DEPLOYMENT["spec"]["template"]["spec"]
(CONTAINER,) = POD["containers"]
CONFIG = one("ConfigMap")["data"]


def test_kustomizations_name_files_that_exist() -> None:
    for path in K8S.rglob("kustomization.yaml"):
        for resource in yaml.safe_load(path.read_text(encoding="utf-8"))["resources"]:
            assert (path.parent / resource).is_file(), f"{path}: {resource}"


def test_two_or_more_replicas_rolled_without_losing_capacity() -> None:
    assert DEPLOYMENT["spec"]["replicas"] >= 2
    rolling = DEPLOYMENT["spec"]["strategy"]["rollingUpdate"]
    assert rolling["maxUnavailable"] == 0
    assert CONTAINER["args"] == ["serve"]


def test_probes() -> None:
    port_names = {port["name"]: port["containerPort"] for port in CONTAINER["ports"]}
    assert port_names == {"http": default("port")}
    readiness = CONTAINER["readinessProbe"]["httpGet"]
    liveness = CONTAINER["livenessProbe"]["httpGet"]
    assert readiness == {"path": "/readyz", "port": "http"}
    assert liveness == {"path": "/healthz", "port": "http"}


def test_the_endpoint_goes_before_sigterm_and_the_drain_fits_the_grace_period() -> None:
    command = CONTAINER["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = float(command[1])
    assert pre_stop >= 5
    grace = float(CONFIG["ERP_RELAY_SHUTDOWN_GRACE_S"])
    assert POD["terminationGracePeriodSeconds"] > pre_stop + grace + 5


def test_unprivileged_with_a_read_only_root() -> None:
    for kind in ("Deployment", "Job"):
        pod = one(kind)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == IMAGE_UID
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
            assert "/tmp" in mounts


def test_settings_come_from_the_config_map_and_the_secret() -> None:
    sources = {
        next(iter(source)): next(iter(source.values()))["name"] for source in CONTAINER["envFrom"]
    }
    assert sources == {"configMapRef": "erp-relay", "secretRef": "erp-relay"}
    assert set(CONFIG) <= setting_names(), set(CONFIG) - setting_names()
    for key in CONFIG:
        assert not SECRET_NAME.search(key), f"{key} belongs in the Secret"
    assert "ERP_RELAY_REPLICA_ID" not in {e["name"] for e in CONTAINER.get("env", [])}
    assert CONFIG["ERP_RELAY_MAX_BODY_BYTES"] == str(default("max_body_bytes"))
    assert yaml.safe_load(CONFIG["ERP_RELAY_TRUSTED_PROXIES"])  # nginx's headers believed


def test_service_and_budget_select_the_relay_pods() -> None:
    labels = DEPLOYMENT["spec"]["template"]["metadata"]["labels"]
    assert DEPLOYMENT["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = one("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    budget = one("PodDisruptionBudget")["spec"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    if "maxUnavailable" in budget:
        assert budget["maxUnavailable"] < DEPLOYMENT["spec"]["replicas"]
    else:
        assert budget["minAvailable"] >= 1


def test_the_migration_job() -> None:
    job = one("Job")["spec"]
    (container,) = job["template"]["spec"]["containers"]
    assert container["args"] == ["db", "upgrade"]
    assert container["image"] == CONTAINER["image"]
    assert job["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")
    assert {"secretRef": {"name": "erp-relay"}} in container["envFrom"]


def test_ingress_timeouts_for_the_socket_and_the_calls() -> None:
    service = one("Service")["metadata"]["name"]
    agents = one("Ingress", "erp-relay-agents")
    api = one("Ingress", "erp-relay-api")
    (agent_path,) = agents["spec"]["rules"][0]["http"]["paths"]
    assert agent_path["path"] == "/v1/agent/connect"
    assert agent_path["pathType"] == "Exact"
    notes = agents["metadata"]["annotations"]
    assert int(notes["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 600
    assert int(notes["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 600
    notes = api["metadata"]["annotations"]
    assert int(notes["nginx.ingress.kubernetes.io/proxy-read-timeout"]) > default("max_timeout_s")
    assert notes["nginx.ingress.kubernetes.io/proxy-body-size"] == "1m"
    assert default("max_body_bytes") == 1024 * 1024
    for ingress in (agents, api):
        notes = ingress["metadata"]["annotations"]
        assert "non_idempotent" not in notes.get(
            "nginx.ingress.kubernetes.io/proxy-next-upstream", ""
        )
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["backend"]["service"]["name"] == service
        assert ingress["spec"]["tls"]


def test_kustomize_builds_with_one_image_for_replicas_and_migration() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (optional: the YAML checks above still ran)")
    images = set()
    for folder in (K8S, K8S / "migrate"):
        result = subprocess.run(
            [kubectl, "kustomize", str(folder)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        images |= {
            container["image"]
            for document in yaml.safe_load_all(result.stdout)
            if document["kind"] in ("Deployment", "Job")
            for container in document["spec"]["template"]["spec"]["containers"]
        }
    assert len(images) == 1, images
    assert "erp-relay:" in images.pop()
