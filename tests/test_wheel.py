"""hotcold as a user gets it: the wheel built from this repository, installed (not editable) into a fresh
virtualenv, added to a new ``django-admin startproject`` the way README.md's "Add hotcold to your project"
says, with a tiered model of the project's own.

Every command runs in that virtualenv with a temporary directory as its working directory, so nothing of
the repository (the demo site, the example apps, the tests) is on its path. One project runs on the app
alone (no extra installed), one with the ``[celery]`` and ``[prometheus]`` extras, a real Celery worker
and the metrics view. ``pytest -m wheel`` selects these tests.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.wheel

ROOT = Path(__file__).resolve().parent.parent
# top-level entries of the repository that a build never needs (the virtualenv, local data, earlier builds)
NOT_COPIED = {".git", ".venv", "data", "build", "dist", "staticfiles", "artifacts", ".pytest_cache", ".hypothesis"}
TASKS = ["tiering.analyse", "tiering.archive_model", "tiering.archive_model_parallel", "tiering.archive_range",
         "tiering.finish_parallel", "tiering.restore"]

# --- what the README tells a project to write -------------------------------------------------------------
MODELS = '''\
from datetime import timedelta

from django.db import models

from tiering.mixins import TieredSaveMixin
from tiering.policies import TimePolicy
from tiering.query import TieredManager


class Invoice(TieredSaveMixin, models.Model):
    number = models.CharField(max_length=20)
    issued_at = models.DateTimeField(db_index=True)

    objects = TieredManager()

    class Meta:
        base_manager_name = "objects"

    class Tiering:
        policy = TimePolicy("issued_at", older_than=timedelta(days=90))
'''

ADMIN = '''\
from django.contrib import admin

from tiering.admin import TieredModelAdmin

from .models import Invoice


@admin.register(Invoice)
class InvoiceAdmin(TieredModelAdmin):
    list_display = ["number", "issued_at"]
    ordering = ["-issued_at"]
'''

SETTINGS = '''
INSTALLED_APPS += [{apps}]
DATABASES = {{
    "default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "hot.sqlite3"}},
    "cold": {{"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "cold.sqlite3"}},
}}
DATABASE_ROUTERS = ["tiering.router.TieringRouter"]
TIERING = {tiering}
LOGIN_URL = "admin:login"
'''

URLS = '''\
from django.contrib import admin
from django.urls import include, path
{imports}
urlpatterns = [
    path("admin/", admin.site.urls),
    path("tiering/", include("tiering.urls")),
{metrics}]
'''
METRICS_IMPORT = "\nfrom tiering.metrics import export_view\n"
METRICS_URL = '    path("metrics", export_view, name="prometheus-django-metrics"),\n'

CELERY_APP = '''\
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

app = Celery("mysite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
'''
CELERY_INIT = '''\
from .celery import app as celery_app

__all__ = ("celery_app",)
'''

# --- what the test does in the project: ``Project.probe(body)`` runs PROBE + body in ``manage.py shell`` and
# returns its ``found`` dict
PROBE = '''
import json, os, time
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.contrib.staticfiles import finders
from django.test import Client
from django.test.utils import setup_test_environment
from django.utils import timezone
import tiering
from shop.models import Invoice
found = {"tiering": os.path.dirname(tiering.__file__)}

def create(old, new, prefix=""):
    now = timezone.now()
    for i in range(old):
        Invoice.objects.create(number=f"{prefix}old-{i}", issued_at=now - timedelta(days=100 + i))
    for i in range(new):
        Invoice.objects.create(number=f"{prefix}new-{i}", issued_at=now - timedelta(days=i))

def counts():
    return {"all": Invoice.objects.count(), "hot": Invoice.objects.hot().count(),
            "cold": Invoice.objects.cold().count(), "default": Invoice.objects.using("default").count(),
            "cold_alias": Invoice.objects.using("cold").count()}

def superuser_client():
    """The Django test client, logged in as a superuser, in the project's own process."""
    setup_test_environment()
    User = get_user_model()
    if not User.objects.filter(username="admin").exists():
        User.objects.create_superuser("admin", "admin@example.com", "admin-pw-for-the-test")
    client = Client()
    client.force_login(User.objects.get(username="admin"))
    return client

def pages(client):
    dashboard = client.get("/tiering/")
    found["dashboard"] = dashboard.status_code
    found["dashboard_base"] = [t.origin.name for t in dashboard.templates if t.name == "tiering/base.html"]
    found["dashboard_lists_model"] = "shop.Invoice" in dashboard.content.decode()
    for key, url in (("changelist", "/admin/shop/invoice/"), ("changelist_cold", "/admin/shop/invoice/?tier=cold")):
        page = client.get(url)
        found[key] = [page.status_code, page.context["cl"].result_count]
    found["css"] = finders.find("tiering/tiering.css")

def run_now(client):
    page = client.post("/tiering/models/shop.Invoice/run/", follow=True)
    found["run_now"] = [page.status_code, [str(m) for m in page.context["messages"]]]

def wait_for_runs(runs, seconds=90):
    """Until ``runs`` runs of the ledger have ended."""
    from tiering.models import MigrationRun
    ended = MigrationRun.objects.using("default").filter(finished_at__isnull=False)
    deadline = time.monotonic() + seconds
    while ended.count() < runs and time.monotonic() < deadline:
        time.sleep(0.5)
    found["runs"] = list(ended.values_list("state", "rows"))
'''


@dataclass
class Project:
    """A ``startproject`` in a temporary directory and the virtualenv its commands run in."""

    venv: Path
    dir: Path

    def env(self, **extra: str) -> dict[str, str]:
        """The test's environment without its Django settings and paths (pip's own settings stay)."""
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("DJANGO_", "HOTCOLD_", "PYTHON", "VIRTUAL_ENV", "CELERY", "PROMETHEUS"))}
        env.update(PATH=f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONNOUSERSITE="1",
                   **extra)
        return env

    def run(self, *argv: str, ok: bool = True, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
        done = subprocess.run([str(self.venv / "bin" / argv[0]), *argv[1:]], cwd=self.dir, env=self.env(**env),
                              capture_output=True, text=True, timeout=timeout)
        if ok:
            assert done.returncode == 0, f"{' '.join(argv)}: {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def manage(self, *args: str, ok: bool = True, **env: str) -> subprocess.CompletedProcess:
        return self.run("python", "manage.py", *args, ok=ok, **env)

    def probe(self, body: str) -> dict:
        out = self.manage("shell", "-c", f"{PROBE}\n{body}\nprint(json.dumps(found))").stdout
        return json.loads(out.strip().splitlines()[-1])

    def write(self, relative: str, text: str, append: bool = False) -> None:
        path = self.dir / relative
        with open(path, "a" if append else "w") as file:
            file.write(text)

    def configure(self, *, apps: list[str], tiering: dict, metrics: bool = False, extra: str = "") -> None:
        """settings.py as startproject wrote it plus README's lines; urls.py as README shows it."""
        settings_py = self.dir / "mysite" / "settings.py"
        original = settings_py.with_suffix(".orig")
        if not original.exists():
            shutil.copy(settings_py, original)
        block = SETTINGS.format(apps=", ".join(map(repr, apps)), tiering=repr(tiering))
        settings_py.write_text(original.read_text() + block + extra)
        self.write("mysite/urls.py", URLS.format(imports=METRICS_IMPORT if metrics else "",
                                                 metrics=METRICS_URL if metrics else ""))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the working tree (an in-tree build would reuse a stale build/)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"

    def ignored(directory: str, names: list[str]) -> set[str]:
        top = NOT_COPIED if Path(directory) == ROOT else set()
        return {name for name in names if name in top or name == "__pycache__" or name.endswith(".egg-info")}

    shutil.copytree(ROOT, source, ignore=ignored)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"), str(source)],
                   check=True, capture_output=True, text=True, timeout=300)
    (built,) = (tmp / "dist").glob("hotcold-*.whl")
    return built


def new_project(tmp_path: Path, wheel: Path, extras: str = "") -> Project:
    """A fresh virtualenv with the wheel (and ``extras``), a startproject and a startapp of a tiered model."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    (tmp_path / "site").mkdir()
    project = Project(venv, tmp_path / "site")
    # this pip installs into the new virtualenv (--python); without compiling every module, which costs more
    # than compiling on first import the few that the project imports
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                    "--no-compile", f"{wheel}{extras}"], check=True, timeout=300, env=project.env())
    project.run("django-admin", "startproject", "mysite", ".")
    project.manage("startapp", "shop")
    project.write("shop/models.py", MODELS)
    project.write("shop/admin.py", ADMIN)
    return project


def migrate(project: Project) -> None:
    """README's steps after the settings: the project's migration, both aliases migrated, a clean check."""
    project.manage("makemigrations", "shop")
    project.manage("migrate", "--no-input")
    project.manage("migrate", "--database=cold", "--no-input")
    checked = project.manage("check", "--fail-level", "WARNING", "--database", "default", "--database", "cold")
    assert "System check identified no issues" in checked.stdout


def check_pages(found: dict, project: Project, rows: int, cold: int) -> None:
    assert found["tiering"].startswith(str(project.venv)), found["tiering"]  # the installed app, not the repo
    assert found["dashboard"] == 200 and found["dashboard_lists_model"]
    assert found["dashboard_base"] == [os.path.join(found["tiering"], "templates", "tiering", "base.html")]
    assert found["changelist"] == [200, rows]
    assert found["changelist_cold"] == [200, cold]
    assert found["css"] == os.path.join(found["tiering"], "static", "tiering", "tiering.css")


def test_the_wheel_holds_the_tiering_app_alone(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert {name.split("/")[0] for name in names} == {"tiering", wheel.name.split("-py3")[0] + ".dist-info"}
    for data in ("tiering/templates/tiering/base.html", "tiering/templates/tiering/dashboard.html",
                 "tiering/templates/admin/tiering/tiered_change_list.html", "tiering/static/tiering/tiering.css",
                 "tiering/migrations/0001_initial.py", "tiering/management/commands/migrate_cold.py"):
        assert data in names, data
    required = [line.split(": ", 1)[1] for line in metadata.splitlines() if line.startswith("Requires-Dist: ")]
    always = {re.match(r"[\w.-]+", r).group(0): r for r in required if "extra ==" not in r}
    assert sorted(always) == ["Django", "tqdm"], required  # the optional parts are extras
    assert all(">=" in r for r in required if "hotcold[" not in r), required  # lower bounds pinned
    extras = {line.split(": ", 1)[1] for line in metadata.splitlines() if line.startswith("Provides-Extra: ")}
    assert {"celery", "prometheus", "postgresql", "demo", "test"} <= extras


def test_a_new_project_on_the_app_alone(wheel, tmp_path):
    project = new_project(tmp_path, wheel)
    modules = ["accounts", "orders", "hotcold_site", "tests", "bench", "celery", "django_prometheus"]
    imported = project.run("python", "-c", "import importlib.util, sys; "
                           f"print([m for m in {modules!r} if importlib.util.find_spec(m)])")
    assert imported.stdout.strip() == "[]"  # neither the repository nor an extra is on the path

    # a setting that needs an extra that is not installed is named by the checks
    project.configure(apps=["tiering", "shop"], tiering={"HOT": "default", "COLD": "cold", "SCHEDULE": "30 3 * * *"})
    checked = project.manage("check", "--fail-level", "WARNING", ok=False)
    assert checked.returncode == 1
    assert "tiering.W010" in checked.stderr and "tiering.W011" in checked.stderr, checked.stderr
    assert "pip install 'hotcold[celery]'" in checked.stderr
    # the parts that need an extra say which one
    schedule = project.manage("tiering_schedule", ok=False)
    assert schedule.returncode == 1
    assert schedule.stderr.strip().splitlines()[-1] == (
        "CommandError: The schedules need django-celery-beat in INSTALLED_APPS (pip install 'hotcold[celery]')")
    found = project.probe("""
for module in ("tasks", "metrics"):
    try:
        __import__(f"tiering.{module}")
    except Exception as exc:
        found[module] = f"{type(exc).__name__}: {exc}"
""")
    assert found["tasks"] == "ImproperlyConfigured: tiering.tasks needs Celery (pip install 'hotcold[celery]')"
    assert found["metrics"] == ("ImproperlyConfigured: tiering.metrics needs django-prometheus "
                                "(pip install 'hotcold[prometheus]')")

    project.configure(apps=["tiering", "shop"], tiering={"HOT": "default", "COLD": "cold", "RUN_IN_PROCESS": True})
    migrate(project)
    assert project.probe("create(30, 10); found['counts'] = counts()")["counts"] == {
        "all": 40, "hot": 40, "cold": 0, "default": 40, "cold_alias": 0}
    moved = project.manage("migrate_cold", "--no-input")
    assert "shop.Invoice hot → cold: 30 rows" in moved.stdout, moved.stdout
    # TieredSaveMixin: a cold row read through the manager is saved back into cold, not copied into hot
    found = project.probe("""
found["before"] = counts()
invoice = Invoice.objects.get(number="old-3")
found["tier"] = invoice._state.db
invoice.number = "old-3-paid"
invoice.save()
found["saved_in_cold"] = Invoice.objects.cold().filter(number="old-3-paid").count()
found["after"] = counts()
""")
    assert found["before"] == found["after"] == {"all": 40, "hot": 10, "cold": 30, "default": 10, "cold_alias": 30}
    assert (found["tier"], found["saved_in_cold"]) == ("cold", 1)

    # the pages, then "Run now", which moves in the web process: 5 more old invoices go cold
    found = project.probe("client = superuser_client(); pages(client); create(5, 0, 'more-'); run_now(client); "
                          "found['counts'] = counts()")
    check_pages(found, project, rows=40, cold=30)
    assert found["run_now"][0] == 200
    assert any("5 rows moved" in message for message in found["run_now"][1]), found["run_now"]
    assert found["counts"] == {"all": 45, "hot": 10, "cold": 35, "default": 10, "cold_alias": 35}


def test_a_new_project_with_celery_and_prometheus(wheel, tmp_path):
    if settings.REDIS_SKIP_REASON:
        pytest.skip(f"Redis unavailable for the Celery worker: {settings.REDIS_SKIP_REASON}")
    project = new_project(tmp_path, wheel, "[celery,prometheus]")
    queue = f"hotcold-wheel-{uuid.uuid4().hex[:8]}"  # the test Redis is shared: a queue of its own
    celery_settings = (f"CELERY_BROKER_URL = {settings.REDIS_URL!r}\n"
                       f"CELERY_TASK_DEFAULT_QUEUE = {queue!r}\n")
    project.write("mysite/celery.py", CELERY_APP)
    project.write("mysite/__init__.py", CELERY_INIT)
    project.configure(apps=["django_celery_beat", "tiering", "shop"], tiering={"HOT": "default", "COLD": "cold"},
                      metrics=True, extra=celery_settings)
    migrate(project)
    schedule = project.manage("tiering_schedule")
    assert "created: tiering: archive shop.Invoice  0 2 * * * (UTC)" in schedule.stdout, schedule.stdout

    # the project's own worker finds the tasks (autodiscover_tasks) and takes "Run now"
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [str(project.venv / "bin" / "celery"), "-A", "mysite", "worker", "-P", "solo", "-l", "INFO", "-Q", queue,
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=project.dir, env=project.env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while " ready." not in log.read_text(errors="replace"):
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.2)
        listed = [line.strip()[2:] for line in log.read_text().splitlines() if line.strip().startswith(". tiering.")]
        assert listed == TASKS, log.read_text()[-3000:]
        found = project.probe("create(30, 10); client = superuser_client(); run_now(client); wait_for_runs(1); "
                              "pages(client); found['counts'] = counts(); metrics = client.get('/metrics'); "
                              "found['metrics'] = [metrics.status_code, metrics.content.decode()]")
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
    assert found["run_now"][0] == 200
    assert any("queued" in message for message in found["run_now"][1]), found["run_now"]
    assert found["runs"] == [["succeeded", 30]], log.read_text()[-3000:]
    assert found["counts"] == {"all": 40, "hot": 10, "cold": 30, "default": 10, "cold_alias": 30}
    assert "Task tiering.archive_model[" in log.read_text() and "succeeded" in log.read_text()
    check_pages(found, project, rows=40, cold=30)
    status, text = found["metrics"]
    assert status == 200
    assert 'tiering_tier_rows{model="shop.Invoice",tier="cold"} 30.0' in text, text[:2000]
    assert 'tiering_tier_rows{model="shop.Invoice",tier="hot"} 10.0' in text
