"""Views that hand jobs to the background pool, and show the routines of this process."""

from __future__ import annotations

from typing import Any

import background
from django.http import (  # type: ignore[import-untyped]
    HttpResponse,
    HttpResponseNotAllowed,
    JsonResponse,
)


def submit(request: Any, job: str) -> Any:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    code, text = background.submit(job)
    return HttpResponse(text, status=code, content_type="text/plain")


def status(request: Any) -> Any:
    return JsonResponse(background.status())
