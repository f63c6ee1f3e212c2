"""docker-compose.yml cannot run here (no Docker engine), so it is read and every
command in it is checked against the project: modules, settings, management
commands and celery sub-commands must exist, services and URLs must agree."""
from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import dj_database_url
import pytest
from django.conf import settings
from django.core.management import get_commands

yaml = pytest.importorskip("yaml", reason="PyYAML is a test dependency (pip install -e .[test])")

ROOT = Path(settings.BASE_DIR)
APP_SERVICES = ("migrate", "web", "worker", "beat")
ENV_VARS = ("DATABASE_URL", "COLD_DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def command_lines(value) -> list[list[str]]:
    """A compose command or health check test -> the argv of each shell command in it."""
    if isinstance(value, list):
        if value and value[0] in ("CMD", "CMD-SHELL"):
            kind, *rest = value
            return [rest] if kind == "CMD" else command_lines(rest[0])
        return [value]
    argv = shlex.split(value.replace("$$", "$"))
    if argv[:2] == ["sh", "-c"]:
        return [shlex.split(part) for part in argv[2].split("&&")]
    return [argv]


def all_commands(compose: dict) -> list[tuple[str, list[str]]]:
    found = []
    for name, service in compose["services"].items():
        for key in ("command",):
            if key in service:
                found += [(name, argv) for argv in command_lines(service[key])]
        if "healthcheck" in service:
            found += [(f"{name} healthcheck", argv) for argv in command_lines(service["healthcheck"]["test"])]
    return found


def import_target(target: str):
    module, _, attr = target.partition(":")
    imported = importlib.import_module(module)
    return getattr(imported, attr) if attr else imported


def check_argv(argv: list[str]) -> str:
    """Assert that what ``argv`` names exists; return what was checked (for the report)."""
    program = argv[0]
    if program == "python" and argv[1] == "manage.py":
        assert argv[2] in get_commands(), f"no management command {argv[2]!r}"
        return f"manage.py {argv[2]}"
    if program == "python" and argv[1] == "-c":
        compile(argv[2], "<healthcheck>", "exec")
        return "python -c"
    if program == "gunicorn":
        application = import_target(argv[1])
        assert callable(application), f"{argv[1]} is not a WSGI callable"
        return f"gunicorn {argv[1]}"
    if program == "celery":
        from celery import Celery
        from celery.bin.celery import celery as celery_cli

        app_module = argv[argv.index("-A") + 1]
        module = import_target(app_module)
        assert isinstance(getattr(module, "celery_app", None) or getattr(module, "app", None), Celery)
        subcommand = argv[argv.index("-A") + 2]
        assert subcommand in celery_cli.commands, f"no celery sub-command {subcommand!r}"
        if "-S" in argv:
            scheduler = argv[argv.index("-S") + 1]
            assert isinstance(import_target(scheduler), type), f"scheduler {scheduler} is not a class"
        return f"celery -A {app_module} {subcommand}"
    if program in ("pg_isready", "redis-cli"):
        return program  # shipped by the postgres and redis images
    raise AssertionError(f"unknown program in compose command: {argv}")


def test_services_and_health_checks(compose):
    services = compose["services"]
    for name in ("web", "worker", "beat", "redis", "hot", "cold"):
        assert name in services, f"service {name} missing"
        assert "healthcheck" in services[name], f"service {name} has no health check"
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency}"
    assert "gunicorn" in services["web"]["command"]
    assert " worker" in services["worker"]["command"]
    assert " beat" in services["beat"]["command"]


def test_every_command_names_something_that_exists(compose):
    checked = {check_argv(argv) for _, argv in all_commands(compose)}
    # The commands that matter are really there (guards the parser above against checking nothing).
    assert {"gunicorn hotcold_site.wsgi:application", "celery -A hotcold_site worker",
            "celery -A hotcold_site beat", "manage.py migrate", "manage.py tiering_schedule"} <= checked


def test_environment_matches_settings_and_services(compose):
    services = compose["services"]
    settings_source = (ROOT / "hotcold_site" / "settings.py").read_text()
    for name in APP_SERVICES:
        env = services[name]["environment"]
        for variable in ENV_VARS:
            assert variable in env, f"{name}: {variable} not set"
            assert re.search(rf"[\"']{variable}[\"']", settings_source), f"settings.py does not read {variable}"
    env = services["web"]["environment"]
    for variable, service in (("DATABASE_URL", "hot"), ("COLD_DATABASE_URL", "cold")):
        db = dj_database_url.parse(env[variable])
        assert db["ENGINE"] == "django.db.backends.postgresql"
        assert db["HOST"] == service
        pg_env = services[service]["environment"]
        assert (db["NAME"], db["USER"], db["PASSWORD"]) == (
            pg_env["POSTGRES_DB"], pg_env["POSTGRES_USER"], pg_env["POSTGRES_PASSWORD"])
    assert env["REDIS_URL"].startswith("redis://redis:")


def test_dockerfile_default_command_exists():
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.M)
    assert cmd, "Dockerfile has no exec-form CMD"
    check_argv(yaml.safe_load(cmd.group(1)))
