"""/tiered/... and /plain/...: the same views over the tiered models and over their one-table oracle."""
from django.urls import include, path

from tests.ecosystem.views import PLAIN, TIERED


def patterns(views):
    return [
        path("api/orders/page/", views.page, name="page"),
        path("api/orders/limit/", views.limit, name="limit"),
        path("api/orders/cursor/", views.cursor, name="cursor"),
        path("api/orders/<int:pk>/", views.detail, name="detail"),
        path("orders/", views.table, name="table"),
    ]


urlpatterns = [path(f"{views.prefix}/", include((patterns(views), views.prefix))) for views in (TIERED, PLAIN)]
