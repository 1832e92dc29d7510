"""Token and session authentication: the one home for who may call the API and see the dashboard.

Not a script; app.py calls setup(app) and installs check_token before every request.
    RISK_API_TOKEN unset   everything is open (bind the API to 127.0.0.1, as config.json does)
    RISK_API_TOKEN set     every endpoint but PUBLIC (/health, /openapi.json), /login, /logout
                           and /static/ needs "Authorization: Bearer <token>", or the session
                           cookie /login sets; a browser without either is sent to /login, any
                           other client gets 401 with WWW-Authenticate: Bearer
The session cookie is Flask's signed session (itsdangerous), never the token itself: signed
with a key derived from the token (every worker and restart agrees; a new token signs everyone
out), valid SESSION_HOURS, HttpOnly, SameSite=Strict, Secure over HTTPS. Each session has an id;
POST /logout revokes it on the server (guard.py), so a copy of the cookie taken before is nobody.
A POST signed in by the cookie, and every POST to /login and /logout, must come from this site's
own pages: its Origin (or, without one, its Referer) is this server's, else 403.
Failed credentials are throttled for the whole server (guard.py, shared by every worker): a
wrong Bearer token, a wrong sign-in, a cookie not signed with this server's key each count;
MAX_FAILURES per client address per FAILURE_WINDOW seconds, then 429 with Retry-After for every
credential from that address, the right one included, until the window passes. Comparisons are
constant-time (hmac.compare_digest). /login's next= is followed only when it is a path of this
site (one leading "/", no "//", "\\", control character or scheme); anything else goes to "/",
and a line break is 400.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import timedelta
from urllib.parse import parse_qsl

from flask import (
    Blueprint,
    Flask,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import BadSignature
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import BadRequest, Forbidden, TooManyRequests, Unauthorized

from attrition.api import dashboard
from attrition.api.guard import Guard
from attrition.api.inputs import read_body

PUBLIC = ("/health", "/openapi.json")  # answered without the token
OPEN_PREFIXES = ("/login", "/logout", "/static/")
SESSION_COOKIE = "risk_session"
SESSION_HOURS = 8
UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
MAX_LOGIN_BODY = 4096  # bytes of a sign-in form (a token and next=): 413 beyond
MAX_LOGIN_FIELDS = 8
GUARD_FILE = "auth.sqlite"  # in the config's cache folder

pages = Blueprint("auth", __name__, template_folder="templates")


class Sessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, Secure exactly when the request came over HTTPS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return request.is_secure


def setup(app: Flask) -> None:
    """Sessions signed with a key derived from the token (none without a token: nothing to sign)."""
    token = app.config["API_TOKEN"]
    app.session_interface = Sessions()
    app.config.update(
        SESSION_COOKIE_NAME=SESSION_COOKIE,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
    )
    if token:
        app.secret_key = hmac.new(token.encode(), b"risk-dashboard-session", hashlib.sha256).hexdigest()
    app.extensions["risk_guard"] = Guard(app.extensions["risk_config"].cache_folder / GUARD_FILE)
    app.register_blueprint(pages)


def token_ok(given: str, token: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


def check_token():
    """Before every request: None to go on, a redirect to /login for a browser, or 401 (429 while
    the address is throttled, 403 for a cross-site POST signed in by the cookie)."""
    token = current_app.config["API_TOKEN"]
    if not token or request.path in PUBLIC or request.path.startswith(OPEN_PREFIXES):
        return None
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    cookie = request.cookies.get(SESSION_COOKIE)
    if scheme.lower() == "bearer" or cookie:
        wait_for_throttle()
    if scheme.lower() == "bearer":
        if token_ok(given.strip(), token):
            return None
        failed()
    elif cookie:
        if signed_in():
            if request.method in UNSAFE_METHODS:
                same_origin()
            return None
        if forged(cookie):
            failed()
    if dashboard.is_page(request.path) and dashboard.wants_html():
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")), code=303)
    raise Unauthorized("send Authorization: Bearer <token>", www_authenticate=WWWAuthenticate("bearer"))


def guard() -> Guard:
    return current_app.extensions["risk_guard"]


def address() -> str:
    return request.remote_addr or "unknown"


def wait_for_throttle() -> None:
    """429 with Retry-After while this address has failed MAX_FAILURES times in the window."""
    wait = guard().throttled(address())
    if wait:
        raise TooManyRequests(
            f"too many failed credentials from {address()}; try again in {wait:.0f} s",
            retry_after=max(1, round(wait)),
        )


def failed() -> None:
    guard().record_failure(address())


def signed_in() -> bool:
    """The session cookie signs in: ours, unexpired, with a session id not revoked at sign-out."""
    sid = session.get("sid")
    return session.get("signed_in") is True and isinstance(sid, str) and not guard().revoked(sid)


def forged(cookie: str) -> bool:
    """A cookie not signed with this server's key: a guess. An expired or signed-out one is ours."""
    serializer = current_app.session_interface.get_signing_serializer(current_app)
    try:
        serializer.loads(cookie)
    except BadSignature:
        return True
    return False


def same_origin() -> None:
    """403 unless the request comes from this site's own pages (Origin, else Referer): a page of
    another site cannot post with the operator's cookie (sign-in, sign-out, predictions)."""
    own = request.host_url.rstrip("/")
    origin = request.headers.get("Origin")
    if origin is not None:
        ok = origin == own
    else:
        referer = request.headers.get("Referer", "")
        ok = referer == own or referer.startswith(own + "/")
    if not ok:
        raise Forbidden(
            f"a cross-site request (Origin {str(origin)[:80]!r}): post from this site's own pages"
        )


def local_target(raw: str) -> str:
    """next= when it is a path of this site, else "/"; a line break in it is 400."""
    if "\r" in raw or "\n" in raw:
        raise BadRequest("next must be a path of this site, without line breaks")
    local = (
        raw.startswith("/")
        and not raw.startswith("//")
        and "\\" not in raw
        and not any(ord(char) < 32 or ord(char) == 127 for char in raw)
    )
    return raw if local else "/"


def login_form() -> dict:
    """The sign-in form, read within MAX_LOGIN_BODY bytes and MAX_LOGIN_FIELDS fields: a form of
    millions of fields would cost a worker seconds before any credential is checked."""
    body = read_body(MAX_LOGIN_BODY)
    try:
        return dict(parse_qsl(body.decode("utf-8"), max_num_fields=MAX_LOGIN_FIELDS))
    except (UnicodeDecodeError, ValueError):
        raise BadRequest(f"a sign-in form has at most {MAX_LOGIN_FIELDS} fields of UTF-8 text") from None


@pages.route("/login", methods=["GET", "POST"])
def login():
    """The token, asked once: a signed session cookie then stands in for the Bearer header."""
    token = current_app.config["API_TOKEN"]
    target = local_target(request.args.get("next", "/"))
    if request.method == "GET" or not token:
        return render_template("login.html", failed=False, next=target, needed=bool(token))
    same_origin()
    wait_for_throttle()
    if not token_ok(login_form().get("token", ""), token):
        failed()
        return render_template("login.html", failed=True, next=target, needed=True), 401
    session.clear()
    session.permanent = True
    session["signed_in"] = True
    session["sid"] = secrets.token_urlsafe(18)
    return make_response(redirect(target, code=303))


@pages.post("/logout")
def logout():
    """Ends the session on the server (its id revoked: a copy of the cookie is nobody) and in the
    browser (the cookie removed); the next page asks for the token again."""
    if current_app.config["API_TOKEN"]:
        same_origin()
        sid = session.get("sid")
        if isinstance(sid, str):
            guard().revoke(sid, time.time() + SESSION_HOURS * 3600)
    session.clear()
    return redirect(url_for("auth.login"), code=303)
