"""docker-compose.yml: Debian's docker-compose validates it (no engine needed), and its parts agree with each other,
with deploy/nginx.conf, deploy/prometheus.yml, the Dockerfile and the service's settings."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.settings import Settings
from jacspec import __version__
from tests.deploy import dockerfile, nginx_conf

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE = yaml.safe_load(COMPOSE_FILE.read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
API: dict[str, Any] = SERVICES["api"]
API_ENV: dict[str, str] = {name: str(value) for name, value in API["environment"].items()}
NGINX_CONF = nginx_conf.CONF.read_text()
DOCKER_COMPOSE = shutil.which("docker-compose")

needs_docker_compose = pytest.mark.skipif(
    DOCKER_COMPOSE is None and not os.environ.get("CI"),
    reason="Debian's docker-compose is not installed (CI installs it)",
)


def _config(path: Path) -> subprocess.CompletedProcess[str]:
    assert DOCKER_COMPOSE is not None, "CI must install Debian's docker-compose (see .ci/run)"
    env = {name: value for name, value in os.environ.items() if not name.startswith(("JACSPEC_", "COMPOSE_"))}
    return subprocess.run(
        [DOCKER_COMPOSE, "-f", str(path), "config", "-q"],
        cwd=path.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@needs_docker_compose
def test_docker_compose_config_passes() -> None:
    result = _config(COMPOSE_FILE)
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr


@needs_docker_compose
def test_docker_compose_config_refuses_a_mistake(tmp_path: Path) -> None:
    """The check above can fail: a misspelt key in a copy of the file is refused."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("    restart: unless-stopped", "    restrat: unless-stopped", 1))
    result = _config(broken)
    assert result.returncode != 0
    assert "restrat" in result.stderr


def test_every_api_setting_is_one_of_the_service() -> None:
    names = {name.removeprefix("JACSPEC_").lower() for name in API_ENV if name.startswith("JACSPEC_")}
    assert names <= set(Settings.model_fields), names - set(Settings.model_fields)
    settings = Settings.model_validate(
        {name.removeprefix("JACSPEC_").lower(): value for name, value in API_ENV.items()}
    )
    assert settings.workers == 1
    assert settings.log_format == "json"


def test_several_replicas_with_limits_a_healthcheck_and_a_restart_policy() -> None:
    assert API["deploy"]["replicas"] >= 2
    assert {"cpus", "memory"} <= set(API["deploy"]["resources"]["limits"])
    assert API["restart"] == "unless-stopped"
    assert "container_name" not in API  # replicas need their own names
    assert "ports" not in API  # only nginx is published; the replicas are reached through it
    _, command = dockerfile.healthcheck(dockerfile.stages((ROOT / "Dockerfile").read_text())[-1].one("HEALTHCHECK"))
    assert API["healthcheck"]["test"] == ["CMD", *command]
    assert API["build"] == "."
    assert API["image"] == f"jacspec:{__version__}"


def test_nginx_fronts_the_replicas_with_the_services_body_limit() -> None:
    nginx = SERVICES["nginx"]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
    assert nginx["depends_on"]["api"]["condition"] == "service_healthy"
    assert nginx_conf.upstream_servers(NGINX_CONF) == [f"api:{API_ENV['JACSPEC_PORT']}"]
    assert API["expose"] == [API_ENV["JACSPEC_PORT"]]
    listen = NGINX_CONF.split("listen ", 1)[1].split(";", 1)[0]
    assert nginx["ports"] == [f"{listen}:{listen}"]
    limit = nginx_conf.body_limit(NGINX_CONF)
    assert int(API_ENV["JACSPEC_MAX_BODY_BYTES"]) == limit == Settings().max_body_bytes
    assert f"larger than {limit} bytes" in NGINX_CONF  # the problem's detail


def test_prometheus_scrapes_every_replica() -> None:
    prometheus = SERVICES["prometheus"]
    assert prometheus["profiles"] == ["monitoring"]
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    [discovery] = job["dns_sd_configs"]
    assert discovery["names"] == ["api"]
    assert str(discovery["port"]) == API_ENV["JACSPEC_PORT"]
    assert job["metrics_path"] == "/metrics"


CLUSTER = ["postgres", "dask-scheduler", "dask-worker", "api-cluster"]


@needs_docker_compose
def test_the_cluster_profile_passes_and_is_off_by_default() -> None:
    """docker-compose 1.29's ``config`` lists every service whatever the profile: which services the default
    profile starts is read from the YAML (those without ``profiles``)."""
    assert DOCKER_COMPOSE is not None
    result = subprocess.run(
        [DOCKER_COMPOSE, "-f", str(COMPOSE_FILE), "--profile", "cluster", "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    assert {name for name, service in SERVICES.items() if "profiles" not in service} == {"api", "nginx"}
    assert {name for name, service in SERVICES.items() if "cluster" in service.get("profiles", [])} == set(CLUSTER)


def test_the_cluster_profile_stores_jobs_in_postgres_and_runs_them_on_dask() -> None:
    for name in CLUSTER:
        assert SERVICES[name]["profiles"] == ["cluster"]
    postgres = SERVICES["postgres"]
    assert postgres["image"] == "postgres:16"
    assert postgres["volumes"] == ["postgres-data:/var/lib/postgresql/data"]
    assert "postgres-data" in COMPOSE["volumes"]
    assert SERVICES["dask-scheduler"]["image"] == SERVICES["dask-worker"]["image"] == API["image"]
    assert SERVICES["dask-scheduler"]["command"][:2] == ["dask", "scheduler"]
    assert SERVICES["dask-scheduler"]["expose"] == ["8786"]
    assert SERVICES["dask-worker"]["command"][:3] == ["dask", "worker", "tcp://dask-scheduler:8786"]
    replica = SERVICES["api-cluster"]
    environment = {name: str(value) for name, value in replica["environment"].items()}
    assert environment["JACSPEC_CLUSTER"] == "tcp://dask-scheduler:8786"
    assert environment["JACSPEC_DATABASE_URL"].startswith("postgresql+psycopg://jacspec:")
    assert environment["JACSPEC_DATABASE_URL"].endswith("@postgres:5432/jacspec")
    assert {name: value for name, value in environment.items() if name in API_ENV} == API_ENV  # the same limits
    assert replica["healthcheck"] == API["healthcheck"]
    assert replica["deploy"]["replicas"] >= 2
    assert replica["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "JACSPEC_CLUSTER" not in API_ENV  # the default profile is unchanged: SQLite and the local pool
    assert "JACSPEC_DATABASE_URL" not in API_ENV
    settings = Settings.model_validate(
        {name.removeprefix("JACSPEC_").lower(): value for name, value in environment.items()}
    )
    assert settings.cluster == "tcp://dask-scheduler:8786"
