"""The little of HTTP the dashboard needs, on plain WSGI: a request read from the environ, a
response, cookies, and the URLs of its pages under the mount point (SCRIPT_NAME).

A queue or schedule name is one path segment whatever it holds: its `%` and `/` are escaped
once more before the URL is quoted, because a WSGI server hands PATH_INFO over already decoded,
where an escaped `/` could no longer be told from a real one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qs, quote, unquote, urlencode

from typing_extensions import final

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = [
    "MAX_FORM_BYTES",
    "BadRequest",
    "Request",
    "Response",
    "TokenRequired",
    "Urls",
    "cookie_header",
    "segment",
    "with_query",
]

MAX_FORM_BYTES: Final = 16 * 1024  # a form of the dashboard is a token and a word or two


class BadRequest(Exception):
    """The request can't be served as sent: answered with `status`, this message, and
    `headers` (a 405's `Allow`)."""

    def __init__(
        self,
        message: str,
        status: HTTPStatus = HTTPStatus.BAD_REQUEST,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or []


class TokenRequired(BadRequest):
    """A request without the token `routines dashboard --token` asks for: answered 403 in
    plain text, with nothing of the store's (not even its URL)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, HTTPStatus.FORBIDDEN)


def segment(name: str) -> str:
    """`name` as one path segment of a URL (see the module's docstring)."""
    return quote(name.replace("%", "%25").replace("/", "%2F"), safe="")


def _path_segments(path_info: str) -> list[str]:
    """PATH_INFO (PEP 3333: the URL's bytes decoded, read as latin-1) split into the segments
    `segment()` made, each back to its text."""
    try:
        path = path_info.encode("latin-1").decode("utf-8")
    except UnicodeError:
        msg = "the path is not UTF-8"
        raise BadRequest(msg, HTTPStatus.NOT_FOUND) from None
    return [unquote(part) for part in path.split("/") if part]


def _cookies(header: str) -> dict[str, str]:
    """The cookies of a Cookie header, the first of each name. Parsed by hand: the standard
    library's `SimpleCookie` drops every cookie after one it finds malformed, and the host
    app's cookies are none of the dashboard's business."""
    found: dict[str, str] = {}
    for pair in header.split(";"):
        name, equals, value = pair.strip().partition("=")
        if equals and name and name not in found:
            found[name] = value.strip().strip('"')
    return found


@final
@dataclass
class Request:
    """One request: its method, the mount point, the path's segments, the query and cookies."""

    environ: WSGIEnvironment
    method: str
    mount: str  # SCRIPT_NAME without a trailing "/": "" at the root, "/dashboard" under Flask
    segments: list[str]
    query: dict[str, list[str]]
    cookies: dict[str, str]
    secure: bool  # the request came over https: cookies are then sent back `Secure`
    _form: dict[str, list[str]] | None = field(default=None, repr=False)

    @classmethod
    def of(cls, environ: WSGIEnvironment) -> Request:
        query = parse_qs(str(environ.get("QUERY_STRING", "")), keep_blank_values=True)
        return cls(
            environ=environ,
            method=str(environ.get("REQUEST_METHOD", "GET")).upper(),
            mount=str(environ.get("SCRIPT_NAME", "")).rstrip("/"),
            segments=_path_segments(str(environ.get("PATH_INFO", ""))),
            query=query,
            cookies=_cookies(str(environ.get("HTTP_COOKIE", ""))),
            secure=environ.get("wsgi.url_scheme") == "https",
        )

    @property
    def path(self) -> str:
        """This request's path, under the mount point, without its query."""
        return self.mount + "/" + "/".join(segment(part) for part in self.segments)

    def arg(self, name: str) -> str | None:
        """The query's first value of `name`, or None (also for an empty one)."""
        values = self.query.get(name)
        return values[0] if values and values[0] else None

    def header(self, name: str) -> str | None:
        """The request header `name` (`"Sec-Fetch-Site"`), or None."""
        value = self.environ.get("HTTP_" + name.upper().replace("-", "_"))
        return None if value is None else str(value)

    def form(self) -> dict[str, list[str]]:
        """The fields of a posted `application/x-www-form-urlencoded` form (read once), as the
        dashboard's pages send them; a body of another type has none."""
        if self._form is None:
            kind = str(self.environ.get("CONTENT_TYPE", "")).partition(";")[0].strip().lower()
            if kind != "application/x-www-form-urlencoded":
                self._form = {}
                return self._form
            try:
                length = int(self.environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_FORM_BYTES:
                msg = f"a form must be at most {MAX_FORM_BYTES} bytes"
                raise BadRequest(msg, HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            body = self.environ["wsgi.input"].read(length) if length else b""
            self._form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        return self._form


@final
@dataclass
class Response:
    """What to answer: a status, a body, and headers besides the dashboard's own."""

    status: HTTPStatus
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def redirect(cls, location: str, headers: list[tuple[str, str]] | None = None) -> Response:
        """303 See Other: after a POST, the browser GETs `location` (no resubmit on reload)."""
        return cls(HTTPStatus.SEE_OTHER, headers=[("Location", location), *(headers or [])])

    @property
    def status_line(self) -> str:
        return f"{self.status.value} {self.status.phrase}"


def cookie_header(
    name: str, value: str, *, path: str, secure: bool, max_age: int | None = None
) -> tuple[str, str]:
    """A Set-Cookie header for one of the dashboard's cookies: never read by script
    (`HttpOnly`), never sent by another site's request (`SameSite=Strict`), only to the mount
    point's paths."""
    parts = [f"{name}={value}", f"Path={path}", "HttpOnly", "SameSite=Strict"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if secure:
        parts.append("Secure")
    return ("Set-Cookie", "; ".join(parts))


@final
@dataclass(frozen=True)
class Urls:
    """The URLs of the dashboard's pages under its mount point, for templates and redirects."""

    mount: str
    css_version: str

    def overview(self) -> str:
        return f"{self.mount}/"

    def css(self) -> str:
        return f"{self.mount}/static/dashboard.css?v={self.css_version}"

    def queue(self, name: str, **query: object) -> str:
        return with_query(f"{self.mount}/queues/{segment(name)}", query)

    def queue_action(self, name: str, action: str) -> str:
        return f"{self.mount}/queues/{segment(name)}/{action}"

    def job(self, queue: str, job_id: int, **query: object) -> str:
        return with_query(f"{self.mount}/queues/{segment(queue)}/jobs/{job_id}", query)

    def job_action(self, queue: str, job_id: int, action: str) -> str:
        return f"{self.mount}/queues/{segment(queue)}/jobs/{job_id}/{action}"

    def schedule(self, name: str, **query: object) -> str:
        return with_query(f"{self.mount}/schedules/{segment(name)}", query)


def with_query(path: str, query: Mapping[str, object]) -> str:
    """`path` with the query of the items of `query` that are not None."""
    given = {key: value for key, value in query.items() if value is not None}
    return f"{path}?{urlencode(given)}" if given else path
