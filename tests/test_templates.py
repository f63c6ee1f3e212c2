"""The tiering pages extend the app's own ``tiering/base.html``, which a project overrides from its templates
directory (as it would the admin's ``admin/base_site.html``), and which renders without the admin's URLs."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client, override_settings
from django.urls import include, path, reverse

import tiering
from tests.dashboard_helpers import MOVER_PERMS, make_user
from tests.move.helpers import seed_orders
from tiering import move
from tiering.models import Direction
from tiering.registry import registry

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)
TIER_PAIRS = ["sqlite"]  # templates do not depend on the databases

APP_BASE = Path(tiering.__file__).parent / "templates" / "tiering" / "base.html"

# ROOT_URLCONF of the test without the admin: a project that mounts only tiering.urls
urlpatterns = [path("tiering/", include("tiering.urls"))]


@pytest.fixture
def pages(tiers):
    """The three pages, for a logged-in staff user who may move rows."""
    seed_orders(tiers.hot, 4, lines=1, old=True)
    run = move.move(registry.by_label("orders.Order"), Direction.TO_COLD, trigger="command")
    client = Client()
    client.force_login(make_user("root", perms=MOVER_PERMS))
    return client, [reverse("tiering:dashboard"), reverse("tiering:run", args=[run.pk]),
                    reverse("tiering:run_now", args=["orders.Order"])]


def test_every_page_extends_the_app_base(pages):
    client, urls = pages
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        bases = [t for t in response.templates if t.name == "tiering/base.html"]
        assert bases and Path(bases[0].origin.name) == APP_BASE, url
        assert "base.html" not in [t.name for t in response.templates], url  # not the project's base
        html = response.content.decode()
        assert 'class="site-header"' in html and "tiering/tiering.css" in html, url
        assert f'href="{reverse("admin:index")}"' in html, url


def test_a_project_overrides_the_base(pages, tmp_path):
    client, urls = pages
    (tmp_path / "tiering").mkdir()
    (tmp_path / "tiering" / "base.html").write_text(
        '<html><body class="project-look"><h6>{% block title %}{% endblock %}</h6>'
        "{% block content %}{% endblock %}</body></html>")
    templates = copy.deepcopy(settings.TEMPLATES)
    templates[0]["DIRS"] = [tmp_path, *templates[0]["DIRS"]]
    with override_settings(TEMPLATES=templates):
        for url in urls:
            html = client.get(url).content.decode()
            assert 'class="project-look"' in html, url
            assert "site-header" not in html, url
        assert "<h1>Tiering dashboard</h1>" in client.get(urls[0]).content.decode()


@override_settings(ROOT_URLCONF=__name__)
def test_the_base_renders_without_the_admin_urls(pages):
    client, urls = pages
    response = client.get("/tiering/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'class="site-header"' in html
    assert "/admin/" not in html
