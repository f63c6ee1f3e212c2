from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="tiering:dashboard", permanent=False)),
    path("admin/", admin.site.urls),
    path("tiering/", include("tiering.urls")),
    path("", include("django_prometheus.urls")),
]
