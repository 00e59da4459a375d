"""The Django recipe's two endpoints: `POST /jobs/<id>` and `GET /status` (jobsapp/views.py)."""

from __future__ import annotations

from django.urls import path  # type: ignore[import-untyped]
from jobsapp import views

urlpatterns = [
    path("jobs/<str:job>", views.submit),
    path("status", views.status),
]
