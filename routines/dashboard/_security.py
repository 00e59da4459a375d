"""What keeps the dashboard's actions to its operator: the headers of every response, the CSRF
check of every POST, and the token that `routines dashboard --token` asks for.

CSRF is a double-submit token: a random value in a cookie of the dashboard's own (`HttpOnly`,
`SameSite=Strict`, its `Path` the mount point) that every form carries again in a hidden
field; a POST is served only when the two are equal. Nothing is kept on the server, so any
number of processes behind one load balancer serve each other's forms, and a host app needs no
secret to configure. Another site can neither read the cookie nor make the browser send it
(`SameSite=Strict`); a sibling subdomain, which could plant a cookie of its own, is refused by
the browser's `Sec-Fetch-Site` header, which scripts can't set.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from http import HTTPStatus
from typing import Final
from urllib.parse import urlencode

from ._http import BadRequest, Request, Response, TokenRequired, cookie_header

__all__ = [
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "TOKEN_COOKIE",
    "TOKEN_PARAMETER",
    "check_csrf",
    "check_token",
    "content_security_policy",
    "csrf_token",
    "new_nonce",
    "security_headers",
]

CSRF_COOKIE: Final = "routines_dashboard_csrf"
CSRF_FIELD: Final = "csrf"
TOKEN_COOKIE: Final = "routines_dashboard_token"
TOKEN_PARAMETER: Final = "token"


def new_nonce() -> str:
    """The nonce of one page's inline script: new for every response."""
    return secrets.token_urlsafe(18)


def content_security_policy(nonce: str) -> str:
    """Nothing from another host; the dashboard's own stylesheet; script only inline with this
    response's nonce; fetches (the counts' refresh) and forms to the dashboard's origin only;
    never in a frame."""
    return "; ".join(
        [
            "default-src 'none'",
            "style-src 'self'",
            f"script-src 'nonce-{nonce}'",
            "connect-src 'self'",
            "img-src 'self'",
            "form-action 'self'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )


def security_headers(nonce: str) -> list[tuple[str, str]]:
    """The headers every response carries, errors and the stylesheet included."""
    return [
        ("Content-Security-Policy", content_security_policy(nonce)),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),  # frame-ancestors, for browsers that predate it
        ("Referrer-Policy", "same-origin"),
        ("Cache-Control", "no-store"),
    ]


def cookie_path(request: Request) -> str:
    return request.mount or "/"


def csrf_token(request: Request, response_headers: list[tuple[str, str]]) -> str:
    """The CSRF token this page's forms carry: the browser's cookie, or a new one whose cookie
    is added to `response_headers`."""
    token = request.cookies.get(CSRF_COOKIE)
    if token and _well_formed(token):
        return token
    token = secrets.token_urlsafe(32)
    response_headers.append(
        cookie_header(CSRF_COOKIE, token, path=cookie_path(request), secure=request.secure)
    )
    return token


def _well_formed(token: str) -> bool:
    return 32 <= len(token) <= 64 and all(c.isascii() and (c.isalnum() or c in "-_") for c in token)


def check_csrf(request: Request) -> None:
    """Raise `BadRequest` (403) unless this POST came from one of the dashboard's own forms."""
    fetched_from = request.header("Sec-Fetch-Site")
    if fetched_from is not None and fetched_from != "same-origin":
        msg = f"refused: this form was sent from another site (Sec-Fetch-Site: {fetched_from})"
        raise BadRequest(msg, HTTPStatus.FORBIDDEN)
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = request.form().get(CSRF_FIELD, [""])[0]
    if not cookie or not sent or not hmac.compare_digest(cookie.encode(), sent.encode()):
        msg = (
            "refused: the form's CSRF token is missing or does not match this browser's; "
            "reload the page and try again"
        )
        raise BadRequest(msg, HTTPStatus.FORBIDDEN)


def _digest(token: str) -> str:
    """What the token cookie holds: the token's SHA-256, so that any token (of any characters)
    makes a valid cookie value."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_token(request: Request, token: str) -> Response | None:
    """None when the request carries `token` in its cookie; for a right `?token=`, a redirect
    that sets the cookie (and takes the token out of the address bar); else `TokenRequired`."""
    expected = _digest(token).encode()
    given = request.cookies.get(TOKEN_COOKIE, "")
    if given and hmac.compare_digest(given.encode(), expected):
        return None
    sent = request.query.get(TOKEN_PARAMETER, [""])[0]
    if sent and hmac.compare_digest(_digest(sent).encode(), expected):
        kept = [
            (name, value)
            for name, values in request.query.items()
            if name != TOKEN_PARAMETER
            for value in values
        ]
        location = request.path + ("?" + urlencode(kept) if kept else "")
        cookie = cookie_header(
            TOKEN_COOKIE, _digest(sent), path=cookie_path(request), secure=request.secure
        )
        return Response.redirect(location, headers=[cookie])
    msg = (
        "this dashboard needs its token: open it once with ?token=... appended to its address "
        "(the --token given to routines dashboard); a cookie keeps it from then on"
    )
    raise TokenRequired(msg)
