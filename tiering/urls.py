from django.urls import path

from . import views

app_name = "tiering"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
]
