from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from tiering.metrics import export_view

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="tiering:dashboard", permanent=False)),
    path("admin/", admin.site.urls),
    path("tiering/", include("tiering.urls")),
    # django-prometheus's exporter, after refreshing the cached tiering gauges (docs/metrics.md).
    path("metrics", export_view, name="prometheus-django-metrics"),
]
