"""The dashboard: every section with full and with empty folders, escaping, the token's login,
and a real browser (Debian's Chromium driven by Playwright) against a real gunicorn."""

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import SAME_SITE, client_for, run_ok

from attrition.api.server import free_port, start_api_server, stop_process

pytestmark = pytest.mark.slow  # pipeline runs, real servers or a browser: make test, not make test-fast

BROWSER = {
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Origin": "http://localhost",  # what a browser sends with a form it posts
}
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def full(reported_workspace):
    return reported_workspace


def page(client, path="/"):
    response = client.get(path, headers=BROWSER)
    assert response.status_code == 200 and response.mimetype == "text/html", response.get_data(as_text=True)[
        :300
    ]
    return response.get_data(as_text=True)


def test_every_section_renders_from_what_the_pipeline_wrote(full):
    html = page(client_for(full))
    for section in ('id="now"', 'id="decisions"', 'id="drift"', 'id="clients"', 'id="data"'):
        assert section in html
    metrics = json.loads((full.path("prod_deployment_path") / "latestscore.json").read_text())
    assert "<b>v1</b>" in html and f"{metrics['f1']:.3f}" in html and "healthy" in html
    calls = pd.read_csv(full.path("output_model_path") / "riskranking.csv", dtype={"corporation": str})
    assert (
        f">{calls['corporation'].iloc[0]}</a>" in html
        and calls["reason"].iloc[0].replace("'", "&#39;") in html
    )
    assert "Last month&#39;s activity" in html and "<svg" in html  # drift, with its bars
    assert "/reports/1/report.pdf" in html and ">pandas<" in html  # reports, dependencies
    assert "dataset1.csv, dataset2.csv" in html


def test_empty_folders_say_what_to_run(workspace):
    html = page(client_for(workspace))
    assert "No model is deployed yet" in html and "make run" in html
    assert "No fullprocess.py run recorded yet" in html and "No call list yet" in html
    assert "No drift figures yet" in html and "No report yet" in html
    assert "No call list yet" in page(client_for(workspace), "/clients")


def test_values_from_data_are_escaped_never_run(full):
    final = full.path("output_folder_path") / "finaldata.csv"
    frame = pd.read_csv(final)
    frame.loc[0, "corporation"] = "<script>alert(1)</script>"
    frame.loc[0, "exited"] = 0
    frame.to_csv(final, index=False)
    run_ok(full, "reporting.py")
    client = client_for(full)
    for path in ("/", "/clients?q=%3Cscr", "/clients/%3Cscript%3Ealert(1)%3C%2Fscript%3E"):
        html = page(client, path)
        assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path


def test_json_clients_keep_their_json(full):
    client = client_for(full)
    for headers in ({}, {"Accept": "*/*"}, {"Accept": "application/json"}):
        response = client.get("/", headers=headers)
        assert response.is_json and "endpoints" in response.get_json()


def test_the_call_list_pages_searches_sorts_and_downloads(full):
    client = client_for(full)
    calls = pd.read_csv(full.path("output_model_path") / "riskranking.csv", dtype={"corporation": str})
    second = page(client, "/clients?page=2")
    assert (
        f">{calls['corporation'].iloc[50]}</a>" in second
        and f">{calls['corporation'].iloc[49]}</a>" not in second
    )
    target = calls["corporation"].iloc[7]
    prefix = target[:2].upper()  # IDs starting with it, in any case
    matching = calls["corporation"].str.lower().str.startswith(prefix.lower())
    found = page(client, f"/clients?q={prefix}")
    assert f">{target}</a>" in found
    assert f"{int(matching.sum()):,} of {len(calls):,} clients whose ID starts with" in found  # it ran
    other = calls["corporation"][~matching].iloc[0]
    assert f">{other}</a>" not in found  # and a client that does not match is not listed
    by_client = page(client, "/clients?sort=client&order=asc")
    first = min(calls["corporation"], key=lambda client: (client.lower(), client))  # any case, then exact
    assert f">{first}</a>" in by_client
    download = client.get("/calllist.csv", headers=BROWSER)
    assert (
        download.status_code == 200
        and download.data == (full.path("output_model_path") / "riskranking.csv").read_bytes()
    )
    assert client.get("/clients?sort=nonsense", headers=BROWSER).status_code == 400
    assert client.get("/clients?page=0", headers=BROWSER).status_code == 400


def test_a_clients_page_has_its_reason_and_history(full):
    client = client_for(full)
    calls = pd.read_csv(full.path("output_model_path") / "riskranking.csv", dtype={"corporation": str})
    html = page(client, f"/clients/{calls['corporation'].iloc[0]}")
    assert "Top reason" in html and calls["reason"].iloc[0].replace("'", "&#39;") in html
    assert "History across extracts" in html
    assert client.get("/clients/nobody-here", headers=BROWSER).status_code == 404


def test_with_a_token_a_browser_signs_in_once(full):
    client = client_for(full, API_TOKEN="s3cret")
    response = client.get("/", headers=BROWSER)
    assert response.status_code == 303 and response.headers["Location"].startswith("/login")
    assert client.get("/", headers={"Accept": "application/json"}).status_code == 401  # JSON clients: 401
    assert client.post("/login", data={"token": "wrong"}, headers=BROWSER).status_code == 401
    response = client.post("/login?next=/clients", data={"token": "s3cret"}, headers=BROWSER)
    assert response.status_code == 303 and response.headers["Location"] == "/clients"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Clients to call" in page(client, "/clients")
    assert client.get("/scoring").status_code == 200  # the cookie serves the JSON routes too
    assert (
        client.post("/login?next=//evil.example", data={"token": "s3cret"}, headers=SAME_SITE).headers[
            "Location"
        ]
        == "/"
    )


def test_each_versions_report_is_served(full):
    client = client_for(full)
    response = client.get("/reports/1/report.pdf", headers=BROWSER)
    assert response.status_code == 200 and response.data.startswith(b"%PDF-")
    assert client.get("/reports/7/report.pdf", headers=BROWSER).status_code == 404


@pytest.fixture
def served(full):
    port = free_port()
    process = start_api_server("127.0.0.1", port, full.root / "gunicorn.log", workers=1, env=full.env)
    yield f"http://127.0.0.1:{port}"
    stop_process(process)


def test_a_real_browser_shows_every_section_searches_and_follows_a_client(served, full, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (make test installs it with apt-get where it can)")
    from playwright.sync_api import sync_playwright

    calls = pd.read_csv(full.path("output_model_path") / "riskranking.csv", dtype={"corporation": str})
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            for width in (1280, 390):
                page_ = browser.new_page(viewport={"width": width, "height": 900})
                errors = []
                page_.on(
                    "console",
                    lambda message, errors=errors: message.type == "error" and errors.append(message.text),
                )
                page_.on("pageerror", lambda error, errors=errors: errors.append(str(error)))
                page_.goto(served + "/")
                for section in ("#now", "#decisions", "#drift", "#clients", "#data"):
                    assert page_.locator(section).is_visible(), section
                assert "v1" in page_.locator("#now").inner_text()
                page_.screenshot(path=str(tmp_path / f"dashboard-{width}.png"), full_page=True)
                page_.click("text=Search and page the whole list")
                target = calls["corporation"].iloc[3]
                page_.fill("input[name=q]", target)
                page_.click("button[type=submit]")
                assert page_.locator("#calllist").inner_text().count(target) >= 1
                page_.click(f"#calllist >> text={target}")
                assert f"Client {target}" in page_.locator("h2").first.inner_text()
                assert errors == [], errors
                page_.close()
        finally:
            browser.close()
    assert (tmp_path / "dashboard-1280.png").stat().st_size > 10_000
    assert (tmp_path / "dashboard-390.png").stat().st_size > 10_000
