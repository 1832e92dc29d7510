"""Token and session authentication: the one home for who may call the API and see the dashboard.

Not a script; app.py calls setup(app) and installs check_token before every request.
    RISK_API_TOKEN unset   everything is open (bind the API to 127.0.0.1, as config.json does)
    RISK_API_TOKEN set     every endpoint but PUBLIC (/health, /openapi.json), /login, /logout
                           and /static/ needs "Authorization: Bearer <token>", or the session
                           cookie /login sets; a browser without either is sent to /login, any
                           other client gets 401 with WWW-Authenticate: Bearer
The session cookie is Flask's signed session (itsdangerous), never the token itself: signed
with a key derived from the token (every worker and restart agrees; a new token signs everyone
out), valid SESSION_HOURS, HttpOnly, SameSite=Strict, Secure over HTTPS; POST /logout ends it.
Failed logins are throttled: MAX_FAILURES per client address per FAILURE_WINDOW seconds in each
worker, then 429 with Retry-After. Comparisons are constant-time (hmac.compare_digest).
/login's next= is followed only when it is a path of this site (one leading "/", no "//", "\\",
control character or scheme); anything else goes to "/", and a line break is 400.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import OrderedDict, deque
from datetime import timedelta

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
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import BadRequest, TooManyRequests, Unauthorized

from attrition.api import dashboard

PUBLIC = ("/health", "/openapi.json")  # answered without the token
OPEN_PREFIXES = ("/login", "/logout", "/static/")
SESSION_COOKIE = "risk_session"
SESSION_HOURS = 8
MAX_FAILURES = 5  # failed logins per client address and window, per worker
FAILURE_WINDOW = 60.0  # seconds
MAX_TRACKED = 10_000  # client addresses remembered for the throttle (the oldest forgotten first)

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
    app.extensions["risk_login_failures"] = (threading.Lock(), OrderedDict())
    app.register_blueprint(pages)


def token_ok(given: str, token: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


def check_token():
    """Before every request: None to go on, a redirect to /login for a browser, or 401."""
    token = current_app.config["API_TOKEN"]
    if not token or request.path in PUBLIC or request.path.startswith(OPEN_PREFIXES):
        return None
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token_ok(given.strip(), token):
        return None
    if request.cookies.get(SESSION_COOKIE) and session.get("signed_in") is True:
        return None
    if dashboard.is_page(request.path) and dashboard.wants_html():
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")), code=303)
    raise Unauthorized("send Authorization: Bearer <token>", www_authenticate=WWWAuthenticate("bearer"))


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


def throttled(address: str) -> float:
    """Seconds until address may try again (0 when it may now)."""
    now = time.monotonic()
    lock, failures = current_app.extensions["risk_login_failures"]
    with lock:
        times = failures.get(address)
        while times and now - times[0] > FAILURE_WINDOW:
            times.popleft()
        if not times or len(times) < MAX_FAILURES:
            return 0.0
        return FAILURE_WINDOW - (now - times[0])


def record_failure(address: str) -> None:
    lock, failures = current_app.extensions["risk_login_failures"]
    with lock:
        failures.setdefault(address, deque()).append(time.monotonic())
        failures.move_to_end(address)
        while len(failures) > MAX_TRACKED:
            failures.popitem(last=False)


@pages.route("/login", methods=["GET", "POST"])
def login():
    """The token, asked once: a signed session cookie then stands in for the Bearer header."""
    token = current_app.config["API_TOKEN"]
    target = local_target(request.args.get("next", "/"))
    if request.method == "GET" or not token:
        return render_template("login.html", failed=False, next=target, needed=bool(token))
    address = request.remote_addr or "unknown"
    wait = throttled(address)
    if wait:
        raise TooManyRequests(
            f"too many failed sign-ins from {address}; try again in {wait:.0f} s",
            retry_after=max(1, round(wait)),
        )
    if not token_ok(request.form.get("token", ""), token):
        record_failure(address)
        return render_template("login.html", failed=True, next=target, needed=True), 401
    session.clear()
    session.permanent = True
    session["signed_in"] = True
    return make_response(redirect(target, code=303))


@pages.post("/logout")
def logout():
    """Ends the session: the cookie is removed, and the next page asks for the token again."""
    session.clear()
    return redirect(url_for("auth.login"), code=303)
