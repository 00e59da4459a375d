"""`app()`: the dashboard as a WSGI application, its routes, its actions and its answers.

Pages are GETs rendered from templates (Jinja2, every value autoescaped); actions are POSTs of
HTML forms that redirect back to a page (303), so the dashboard works with JavaScript off and
a reload never repeats an action. Every answer, errors and the stylesheet included, carries the
headers of `_security.security_headers`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from http import HTTPStatus
from importlib import resources
from typing import TYPE_CHECKING, Any, Final

import jinja2
from typing_extensions import final

from .. import Monitor
from .._status import describe_error, error_text
from .._validate import check_bool
from ..durable import Queue, Store, StoreError, StoreUnavailable
from . import _format, _pages
from ._http import BadRequest, Request, Response, TokenRequired, Urls, with_query
from ._security import (
    CSRF_FIELD,
    check_csrf,
    check_token,
    csrf_token,
    new_nonce,
    security_headers,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["Dashboard", "app"]

logger = logging.getLogger("routines.dashboard")

REFRESH_SECONDS: Final = 5.0  # how often an open page's counts refresh by themselves

# The actions on a job and on a queue: what each calls, and the notice of each outcome.
_JOB_ACTIONS: Final[dict[str, tuple[Callable[[Queue, int], bool], str, str]]] = {
    "retry": (Queue.retry, "retried", "not-retried"),
    "cancel": (Queue.cancel, "canceled", "not-canceled"),
    "run-now": (Queue.run_now, "run-now", "not-waiting"),
}
_QUEUE_ACTIONS: Final = ("pause", "resume", "retry-all")


def app(
    store: Store, *, monitor: Monitor | None = None, read_only: bool = False
) -> WSGIApplication:
    """The dashboard of `store` as a WSGI application: its queues, jobs, schedules, migrations
    and leases, and with `monitor` the routines of this process.

    It has no login of its own: mount it inside the app's authentication (docs/dashboard.md:
    Flask, Django), or serve it with `routines dashboard`. With `read_only=True` it shows no
    action and refuses every POST (403).
    """
    if not isinstance(store, Store):
        msg = f"store must be a durable store (durable.open_store(url)), got {store!r}"
        raise TypeError(msg)
    if monitor is not None and not isinstance(monitor, Monitor):
        msg = f"monitor must be a routines.Monitor or None, got {monitor!r}"
        raise TypeError(msg)
    return Dashboard(store, monitor=monitor, read_only=check_bool("read_only", read_only))


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("routines.dashboard", "templates"),
        autoescape=True,  # every value, in every template: a payload of "<script>" is text
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        age=_format.age,
        iso=_format.iso,
        duration=_format.duration,
        error_summary=_format.error_summary,
        limits=_format.limits,
        pretty_json=_format.pretty_json,
        preview=_format.preview,
        took=_format.took,
    )
    environment.globals.update(routine_time=_pages.routine_time, states=_pages.SHOWN_STATES)
    return environment


@final
class Dashboard:
    """The WSGI application `app()` returns. `token`: what `routines dashboard --token` asks
    of every request; `refresh`: seconds between an open page's refreshes of its counts."""

    def __init__(
        self,
        store: Store,
        *,
        monitor: Monitor | None = None,
        read_only: bool = False,
        token: str | None = None,
        refresh: float = REFRESH_SECONDS,
    ) -> None:
        self.store = store
        self.monitor = monitor
        self.read_only = read_only
        self.refresh = refresh
        self._token = token
        self._templates = _environment()
        self._css = resources.files(__package__).joinpath("static/dashboard.css").read_bytes()
        self._css_version = hashlib.sha256(self._css).hexdigest()[:12]

    def __repr__(self) -> str:
        return f"<routines dashboard of {self.store!r}{' (read-only)' if self.read_only else ''}>"

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        nonce = new_nonce()
        request: Request | None = None
        try:
            request = Request.of(environ)
            response = self._respond(request, nonce)
        except TokenRequired as error:
            response = self._error_page(None, nonce, error.status, error_text(error))
        except BadRequest as error:
            response = self._error_page(request, nonce, error.status, error_text(error))
            response.headers += error.headers
        except StoreUnavailable as error:
            message = f"the store did not answer: {describe_error(error)}"
            response = self._error_page(request, nonce, HTTPStatus.SERVICE_UNAVAILABLE, message)
        except StoreError as error:
            message = f"the store refused: {describe_error(error)}"
            response = self._error_page(request, nonce, HTTPStatus.INTERNAL_SERVER_ERROR, message)
        except Exception:
            logger.exception("dashboard: serving %s failed", environ.get("PATH_INFO", ""))
            message = "the dashboard failed to serve this page: its log has the traceback"
            response = self._error_page(request, nonce, HTTPStatus.INTERNAL_SERVER_ERROR, message)
        own = {name.lower() for name, _ in response.headers}
        headers = [("Content-Type", response.content_type), *response.headers]
        headers += [pair for pair in security_headers(nonce) if pair[0].lower() not in own]
        body = b"" if environ.get("REQUEST_METHOD") == "HEAD" else response.body
        headers.append(("Content-Length", str(len(body))))
        start_response(response.status_line, headers)
        return [body]

    # -- routing ------------------------------------------------------------------------------

    def _respond(self, request: Request, nonce: str) -> Response:
        if self._token is not None:
            answer = check_token(request, self._token)
            if answer is not None:
                return answer
        parts = request.segments
        if parts == ["static", "dashboard.css"]:
            self._only(request, "GET")
            return Response(
                HTTPStatus.OK,
                self._css,
                "text/css; charset=utf-8",
                [("Cache-Control", "public, max-age=86400")],  # its URL changes with it
            )
        if not parts:
            self._only(request, "GET")
            return self._page(request, nonce, "overview.html", self._overview)
        if parts[0] == "queues" and len(parts) >= 2:
            return self._queue_route(request, nonce, parts[1], parts[2:])
        if parts[0] == "schedules" and len(parts) == 2:
            self._only(request, "GET")
            name = parts[1]
            return self._page(
                request,
                nonce,
                "schedule.html",
                lambda urls: _pages.schedule_page(self.store, name, limit=request.arg("limit")),
            )
        raise BadRequest("no such page", HTTPStatus.NOT_FOUND)

    def _queue_route(self, request: Request, nonce: str, name: str, rest: list[str]) -> Response:
        if not rest:
            self._only(request, "GET")
            return self._page(
                request,
                nonce,
                "queue.html",
                lambda urls: _pages.queue_page(
                    self.store,
                    name,
                    state=request.arg("state"),
                    task=request.arg("task"),
                    before=request.arg("before"),
                ),
            )
        if len(rest) == 1 and rest[0] in _QUEUE_ACTIONS:
            self._only(request, "POST")
            return self._queue_action(request, name, rest[0])
        if rest[0] == "jobs" and len(rest) == 2:
            self._only(request, "GET")
            return self._page(
                request,
                nonce,
                "job.html",
                lambda urls: _pages.job_page(self.store, name, rest[1]),
            )
        if rest[0] == "jobs" and len(rest) == 3 and rest[2] in _JOB_ACTIONS:
            self._only(request, "POST")
            return self._job_action(request, name, rest[1], rest[2])
        raise BadRequest("no such page", HTTPStatus.NOT_FOUND)

    @staticmethod
    def _only(request: Request, method: str) -> None:
        allowed = (method, "HEAD") if method == "GET" else (method,)
        if request.method not in allowed:
            msg = f"this address takes {' or '.join(allowed)}, not {request.method}"
            raise BadRequest(msg, HTTPStatus.METHOD_NOT_ALLOWED, [("Allow", ", ".join(allowed))])

    # -- actions ------------------------------------------------------------------------------

    def _check_action(self, request: Request) -> None:
        if self.read_only:
            msg = "refused: this dashboard is read-only"
            raise BadRequest(msg, HTTPStatus.FORBIDDEN)
        check_csrf(request)

    def _queue_action(self, request: Request, name: str, action: str) -> Response:
        self._check_action(request)
        queue = _pages.queue_of(self.store, name)
        query: dict[str, object]
        if action == "pause":
            queue.pause()
            query = {"done": "paused"}
        elif action == "resume":
            queue.resume()
            query = {"done": "resumed"}
        else:
            query = {"done": "retried-all", "count": queue.retry_all(state="failed")}
        logger.info(
            "dashboard: %s on queue %r",
            action,
            name,
            extra={"event": "dashboard_action", "action": action, "queue": name},
        )
        urls = self._urls(request)
        back_to_overview = request.form().get("back", [""])[0] == "overview"
        location = (
            with_query(urls.overview(), query) if back_to_overview else urls.queue(name, **query)
        )
        return Response.redirect(location)

    def _job_action(self, request: Request, name: str, job_id: str, action: str) -> Response:
        self._check_action(request)
        number = _pages.id_arg("the job id", job_id)
        assert number is not None
        act, done, not_done = _JOB_ACTIONS[action]
        acted = act(_pages.queue_of(self.store, name), number)
        logger.info(
            "dashboard: %s of job %d of queue %r: %s",
            action,
            number,
            name,
            "done" if acted else "nothing to do",
            extra={"event": "dashboard_action", "action": action, "queue": name, "job_id": number},
        )
        return Response.redirect(
            self._urls(request).job(name, number, done=done if acted else not_done)
        )

    # -- rendering ----------------------------------------------------------------------------

    def _urls(self, request: Request) -> Urls:
        return Urls(request.mount, self._css_version)

    def _overview(self, urls: Urls) -> dict[str, Any]:
        return _pages.overview_page(self.store, self.monitor, urls)

    def _page(
        self,
        request: Request,
        nonce: str,
        template: str,
        read: Callable[[Urls], dict[str, Any]],
    ) -> Response:
        urls = self._urls(request)
        headers: list[tuple[str, str]] = []
        context = read(urls)
        context.update(self._common(request, nonce, urls, headers))
        body = self._templates.get_template(template).render(context).encode("utf-8")
        return Response(HTTPStatus.OK, body, headers=headers)

    def _common(
        self, request: Request, nonce: str, urls: Urls, headers: list[tuple[str, str]]
    ) -> dict[str, Any]:
        """What every page's template is given besides its own: the URLs, the nonce of its
        script, the CSRF token of its forms (none when read-only), the store it shows."""
        return {
            "urls": urls,
            "nonce": nonce,
            "actions": not self.read_only,
            "csrf": None if self.read_only else csrf_token(request, headers),
            "csrf_field": CSRF_FIELD,
            "read_only": self.read_only,
            "refresh": self.refresh,
            "now": datetime.now(timezone.utc),
            "store": self.store,
            "notice": _pages.notice(request.arg("done"), request.arg("count")),
            "here": self._here(request),
        }

    @staticmethod
    def _here(request: Request) -> str:
        """This page's address without the notice of an action: the "refresh" link."""
        kept = {
            key: values[0]
            for key, values in request.query.items()
            if key not in ("done", "count") and values and values[0]
        }
        return with_query(request.path, kept)

    def _error_page(
        self, request: Request | None, nonce: str, status: HTTPStatus, message: str
    ) -> Response:
        """The page of an error; in plain text for a request that could not be read, or that
        lacks the token (it is shown nothing of the store)."""
        if request is None:
            return Response(status, message.encode("utf-8"), "text/plain; charset=utf-8")
        urls = self._urls(request)
        headers: list[tuple[str, str]] = []
        context = self._common(request, nonce, urls, headers)
        context.update(status=status, message=message, notice=None)
        try:
            body = self._templates.get_template("error.html").render(context).encode("utf-8")
        except Exception:
            logger.exception("dashboard: the error page failed to render")
            return Response(status, message.encode("utf-8"), "text/plain; charset=utf-8")
        return Response(status, body, headers=headers)
