"""Token and cookie authentication: the one home for who may call the API and see the dashboard.

Not a script; app.py installs check_token before every request and registers the login page.
    RISK_API_TOKEN unset   everything is open (bind the API to 127.0.0.1, as config.json does)
    RISK_API_TOKEN set     every endpoint but PUBLIC (/health, /openapi.json), /login and
                           /static/ needs "Authorization: Bearer <token>", or the cookie /login
                           sets (HttpOnly, SameSite=Strict, Secure over HTTPS); a browser without
                           either is sent to /login, any other client gets 401 with
                           WWW-Authenticate: Bearer
Comparisons are constant-time (hmac.compare_digest). /login redirects only to a path of this
site (never //host), so a link cannot send a person elsewhere after they sign in.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, current_app, make_response, redirect, render_template, request, url_for
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Unauthorized

import dashboard

PUBLIC = ("/health", "/openapi.json")  # answered without the token
TOKEN_COOKIE = "risk_token"

pages = Blueprint("auth", __name__, template_folder="templates")


def token_ok(given: str, token: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


def check_token():
    """Before every request: None to go on, a redirect to /login for a browser, or 401."""
    token = current_app.config["API_TOKEN"]
    if not token or request.path in PUBLIC or request.path.startswith(("/login", "/static/")):
        return None
    if token_ok(request.cookies.get(TOKEN_COOKIE, ""), token):
        return None
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token_ok(given.strip(), token):
        return None
    if dashboard.is_page(request.path) and dashboard.wants_html():
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")), code=303)
    raise Unauthorized("send Authorization: Bearer <token>", www_authenticate=WWWAuthenticate("bearer"))


@pages.route("/login", methods=["GET", "POST"])
def login():
    """The token, asked once: a cookie (HttpOnly, SameSite=Strict) then stands in for the Bearer header."""
    token = current_app.config["API_TOKEN"]
    target = request.args.get("next", "/")
    if not target.startswith("/") or target.startswith("//"):
        target = "/"
    if request.method == "GET" or not token:
        return render_template("login.html", failed=False, next=target, needed=bool(token))
    if not token_ok(request.form.get("token", ""), token):
        return render_template("login.html", failed=True, next=target, needed=True), 401
    response = make_response(redirect(target, code=303))
    response.set_cookie(
        TOKEN_COOKIE, token, httponly=True, samesite="Strict", secure=request.is_secure, path="/"
    )
    return response
