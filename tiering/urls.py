from django.urls import path

from . import views

app_name = "tiering"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("runs/<int:pk>/", views.run_detail, name="run"),
    path("runs/<int:pk>/undo/", views.undo_run, name="undo_run"),
    path("models/<str:label>/run/", views.run_now, name="run_now"),
]
