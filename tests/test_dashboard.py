"""The dashboard at /ui in a real headless Chromium against a real gateway on loopback.

Rows come from requests made through the gateway itself (fake upstreams, a guard policy
so audit rows exist, a virtual key with a budget), plus one row written straight to the
store whose route reason and deployment are HTML, to check that the page shows them as
text. Numbers on the page are compared with SQL over the same database.

Needs Debian's ``chromium`` and the ``playwright`` package (no browser download: the
system chromium is used); without them these tests skip locally and fail in CI
(``.ci/run`` installs chromium).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from _servers import serve_app
from modelmix.catalog import config_from_dict
from modelmix.engine import ChatService
from modelmix.server import create_app
from modelmix.server.keys import KeyStore, VirtualKeyAuth
from modelmix.store import UsageRecord, UsageStore, UsageWriter
from modelmix.testing import FakeProvider

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # pragma: no cover - dev extra missing
    sync_playwright = None  # type: ignore[assignment]


def _need_browser() -> None:
    missing = [what for what, ok in (("Debian's chromium (apt-get install chromium)", CHROMIUM),
                                     ("playwright (pip install playwright)", sync_playwright))
               if not ok]
    if missing:
        message = "dashboard browser tests need " + " and ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


MASTER = "mk-dashboard-test"
XSS = "<img src=x onerror=window.__xss=1>"
POLICY = {
    "name": "dash",
    "entity_classes": {"CREDIT_CARD": "regulated", "EMAIL_ADDRESS": "confidential"},
    "classes": {"public": {"action": "allow"}, "internal": {"action": "allow"},
                "confidential": {"action": "route-local"},
                "regulated": {"action": "pseudonymise"}},
    "entities": {"API_KEY": {"action": "block", "reason": "no credentials"}},
}
CONFIG = {
    "deployments": [
        {"name": "open-a", "provider": "vllm", "base_url": "http://127.0.0.1:9/v1",
         "model": "m-open", "hosting": "self-hosted", "input_cost_per_mtok": 0.1,
         "output_cost_per_mtok": 0.1},
        {"name": "prop-b", "provider": "openai-compatible", "base_url": "http://127.0.0.1:9/v1",
         "model": "m-prop", "tier": "proprietary", "hosting": "cloud",
         "input_cost_per_mtok": 2, "output_cost_per_mtok": 8},
    ],
    "router": "rules",
    "policy": POLICY,
}


@dataclass
class Gateway:
    base: str
    db: Path
    key: str
    key_id: str

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db) as conn:
            return conn.execute(query, args).fetchall()


def _traffic(base: str, key: str) -> None:
    """Requests of every kind through the gateway itself."""
    master = openai.OpenAI(base_url=base + "/v1", api_key=MASTER, max_retries=0)
    virtual = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
    say = [("auto", f"hello {i}") for i in range(26)] + [("prop-b", "hi")] * 4 + [
        ("prop-b", "my card is 4111 1111 1111 1111"), ("auto", "mail jane.doe@example.com")]
    for model, text in say:
        master.chat.completions.create(model=model, messages=[{"role": "user", "content": text}])
    for model, text in [("prop-b", "mail jane.doe@example.com"),
                        ("auto", "key sk-proj-AbCdEf0123456789AbCdEf0123456789xyz"),
                        (XSS, "hi")]:
        with pytest.raises(openai.APIStatusError):
            master.chat.completions.create(model=model,
                                           messages=[{"role": "user", "content": text}])
    for _ in range(2):
        virtual.chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}])


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    db = tmp_path_factory.mktemp("dash") / "usage.db"
    url = f"sqlite:///{db}"
    cfg = config_from_dict(CONFIG)
    fakes = {d.name: FakeProvider(d, reply=f"hello from {d.name}") for d in cfg.deployments}
    writer = UsageWriter(UsageStore(url), flush_interval_s=0.02)
    service = ChatService(cfg, providers=fakes, usage=writer)
    app = create_app(service=service, auth=VirtualKeyAuth(MASTER, KeyStore(url), refresh_s=0))
    with serve_app(app) as base:
        made = httpx.post(base + "/key/generate", headers={"authorization": f"Bearer {MASTER}"},
                          json={"max_budget": 5.0, "key_alias": "team-a"}).json()
        _traffic(base, made["key"])
        UsageStore(url).insert_many([UsageRecord(
            request_id="xss-row", created_at=time.time(), requested_model=XSS,
            deployment="<b>bold</b>", route_reason=XSS, status_code=200)])
        gw = Gateway(base, db, made["key"], made["key_id"])
        deadline = time.monotonic() + 10
        while gw.sql("SELECT count(*) FROM usage")[0][0] < 38:  # 32 + 3 refused + 2 + 1
            assert time.monotonic() < deadline, "usage rows were not written"
            time.sleep(0.05)
        yield gw


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    _need_browser()
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def page(browser: Browser, gateway: Gateway) -> Iterator[Page]:
    """The dashboard opened with the master key, every panel loaded."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    opened = context.new_page()
    dialogs: list[str] = []
    opened.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    opened.goto(gateway.base + "/ui")
    opened.fill("#key", MASTER)
    opened.click("#login button")
    opened.wait_for_selector("body[data-loaded]", timeout=15000)
    yield opened
    assert dialogs == []
    context.close()


def _card(page: Page, name: str) -> str:
    return page.locator(f'[data-card="{name}"] .value').inner_text()


def _num(text: str) -> float:
    return float(text.replace("$", "").replace(",", ""))


def test_traffic_panel_matches_sql(page: Page, gateway: Gateway) -> None:
    total, errors = gateway.sql(
        "SELECT count(*), sum(error IS NOT NULL OR status_code >= 400) FROM usage")[0]
    assert _num(_card(page, "requests")) == total
    assert _num(_card(page, "errors")) == errors
    by_dep = dict(gateway.sql("SELECT deployment, count(*) FROM usage GROUP BY deployment"))
    tier = page.locator('#by-tier [data-row="open"] .count').inner_text()
    assert tier.startswith(f"{by_dep['open-a']} ")
    tier = page.locator('#by-tier [data-row="proprietary"] .count').inner_text()
    assert tier.startswith(f"{by_dep['prop-b']} ")
    rules = gateway.sql("SELECT count(*) FROM usage WHERE route_reason LIKE 'rules:%'")[0][0]
    assert page.locator('#by-reason [data-row="rules"] .count').inner_text().startswith(
        f"{rules} ")
    chat = gateway.sql("SELECT count(*) FROM usage WHERE endpoint = 'chat'")[0][0]
    assert page.locator('#by-endpoint [data-row="chat"] .count').inner_text().startswith(
        f"{chat} ")
    row = page.locator('#deployments tr[data-deployment="prop-b"] td')
    assert row.nth(6).inner_text() == str(by_dep["prop-b"])


def test_saved_vs_all_proprietary(page: Page, gateway: Gateway) -> None:
    prompt, completion, cost = gateway.sql(
        "SELECT sum(prompt_tokens), sum(completion_tokens), sum(cost_usd) FROM usage")[0]
    baseline = (prompt * 2 + completion * 8) / 1e6  # prop-b: the priciest proprietary
    assert _num(_card(page, "baseline")) == pytest.approx(baseline, abs=1e-4)
    assert _num(_card(page, "saved")) == pytest.approx(baseline - cost, abs=1e-4)
    assert "prop-b" in page.locator("#reference").inner_text()
    assert page.locator("#cost-chart svg polyline").count() == 2


def test_guard_panel_and_audit_log(page: Page, gateway: Gateway) -> None:
    actions = dict(gateway.sql("SELECT action, count(*) FROM guard_audit GROUP BY action"))
    assert actions["block"] == 1 and actions["pseudonymise"] == 1
    assert actions["route-local"] == 2
    blocked = gateway.sql("SELECT count(*) FROM guard_audit "
                          "WHERE action = 'block' OR status_code = 403")[0][0]
    assert _num(_card(page, "blocked")) == blocked == 2
    assert _num(_card(page, "route-local")) == actions["route-local"]
    assert _num(_card(page, "pseudonymise")) == actions["pseudonymise"]
    log = page.locator("#audit tbody").inner_text()
    assert "API_KEY x1" in log and "CREDIT_CARD x1" in log
    assert "4111" not in log and "jane.doe" not in log and "sk-proj" not in log


def test_keys_panel_shows_budget_and_spend(page: Page, gateway: Gateway) -> None:
    row = page.locator(f'#keys tr[data-key="{gateway.key_id}"] td')
    assert row.nth(1).inner_text() == "team-a"
    assert row.nth(2).inner_text() == "$5.00"
    listed = httpx.get(gateway.base + "/key/list",
                       headers={"authorization": f"Bearer {MASTER}"}).json()["keys"][0]
    assert row.nth(3).inner_text() == f"${listed['spend']:.4f}"
    used = gateway.sql("SELECT count(*) FROM usage WHERE key_id = ?", gateway.key_id)[0][0]
    assert used == 2 and row.nth(5).inner_text() == "2"
    text = page.locator("#keys").inner_text()
    assert gateway.key not in text
    stored_hash = gateway.sql("SELECT key_hash FROM virtual_keys")[0][0]
    assert stored_hash not in page.content()


def _until(check: Any, what: str, timeout_s: float = 5.0) -> None:
    """Poll ``check()`` from Python (the page's CSP forbids the eval that
    ``wait_for_function`` needs: a strict policy holds for test code too)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_request_log_pages_by_keyset(page: Page, gateway: Gateway) -> None:
    newest = [r[0] for r in gateway.sql(
        "SELECT request_id FROM usage ORDER BY created_at DESC, id DESC LIMIT 50")]

    def shown() -> list[str]:
        return page.locator("#requests tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.request)")

    assert shown() == newest[:25]
    page.click("#req-older")
    _until(lambda: shown() == newest[25:50], "the second page did not show")
    page.select_option("#f-deployment", "prop-b")
    page.click("#f-apply")
    ids = {r[0] for r in gateway.sql("SELECT request_id FROM usage WHERE deployment = 'prop-b'")}
    _until(lambda: set(shown()) == ids, "the filtered page did not show")
    page.select_option("#f-deployment", "")
    page.click("#f-apply")
    _until(lambda: shown() == newest[:25], "the unfiltered first page did not come back")


def test_html_from_the_store_renders_as_text(page: Page) -> None:
    assert page.evaluate("window.__xss") is None
    assert page.locator("img").count() == 0 and page.locator("main b").count() == 0
    cells = page.locator('#requests tr[data-request="xss-row"] td')
    assert cells.nth(4).inner_text() == XSS
    assert cells.nth(3).inner_text() == "<b>bold</b>"
    assert page.locator(f'#by-reason [data-row="{XSS}"]').count() == 1


def test_playground_sends_through_the_gateway(page: Page, gateway: Gateway) -> None:
    before = gateway.sql("SELECT count(*) FROM usage")[0][0]
    page.select_option("#play-model", "prop-b")
    page.fill("#play-prompt", "hi from the playground")
    page.click("#play button")
    page.wait_for_selector('#play-meta [data-field="deployment"]')
    assert page.locator('#play-meta [data-field="deployment"]').inner_text() == "prop-b"
    assert page.locator('#play-meta [data-field="status"]').inner_text() == "200"
    assert float(page.locator('#play-meta [data-field="cost USD"]').inner_text()) > 0
    assert page.locator("#play-answer").inner_text() == "hello from prop-b"
    deadline = time.monotonic() + 5
    while gateway.sql("SELECT count(*) FROM usage")[0][0] == before:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_screenshot_is_a_real_picture(page: Page, tmp_path: Path) -> None:
    from PIL import Image

    page.evaluate("window.scrollTo(0, 0)")
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot))
    extra = os.environ.get("MODELMIX_SCREENSHOT_DIR")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(extra) / "dashboard.png")
    image = Image.open(shot)
    assert image.format == "PNG" and image.size == (1280, 1000)
    box = page.locator("#panel-traffic").bounding_box()
    assert box is not None
    panel = image.convert("RGB").crop((int(box["x"]), int(box["y"]),
                                       int(box["x"] + box["width"]),
                                       int(min(box["y"] + box["height"], 1000))))
    pixels = [panel.getpixel((x, y)) for x in range(0, panel.width, 2)
              for y in range(0, panel.height, 2)]
    colours = len(set(pixels))
    non_white = sum(1 for p in pixels if min(p) < 235) / len(pixels)
    assert colours >= 20 and non_white > 0.03, (colours, non_white)


def test_wrong_key_shows_an_error_and_no_data(browser: Browser, gateway: Gateway) -> None:
    context = browser.new_context()
    other = context.new_page()
    other.goto(gateway.base + "/ui")
    for key, message in (("wrong-key", "invalid API key"),
                         (gateway.key, "needs the master key")):
        other.fill("#key", key)
        other.click("#login button")
        other.wait_for_selector("#error:not([hidden])")
        assert message in other.locator("#error").inner_text()
        assert other.locator("#board").is_hidden()
        assert other.locator("tbody tr").count() == 0
    assert other.evaluate("sessionStorage.length") == 0
    context.close()


def test_api_needs_the_master_key(gateway: Gateway) -> None:
    url = gateway.base + "/ui/api/overview"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"authorization": "Bearer nope"}).status_code == 401
    denied = httpx.get(url, headers={"authorization": f"Bearer {gateway.key}"})
    assert denied.status_code == 403 and "rows" not in denied.text
    ok = httpx.get(url, headers={"authorization": f"Bearer {MASTER}"})
    assert ok.status_code == 200 and ok.json()["totals"]["requests"] > 0
    assert ok.headers["cache-control"] == "no-store"
    bad = httpx.get(gateway.base + "/ui/api/requests?before=x&limit=9999",
                    headers={"authorization": f"Bearer {MASTER}"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] in ("limit", "before")


def test_page_headers_forbid_inline_script_and_framing(gateway: Gateway) -> None:
    page = httpx.get(gateway.base + "/ui")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and page.headers["x-frame-options"] == "DENY"
    assert "<script>" not in page.text and "onclick" not in page.text
    assert httpx.get(gateway.base + "/ui/static/app.js").headers[
        "content-type"].startswith("text/javascript")
    assert httpx.get(gateway.base + "/ui/static/../_ui.py").status_code == 404


@pytest.mark.parametrize(("query", "param"), [
    ("limit=\u00b2", "limit"), ("limit=\uff11", "limit"), ("limit=%205", "limit"),
    ("status=\u00b2", "status"), ("status=\uff12\uff10\uff10", "status"),
    ("before=1:99999999999999999999999999999", "before"), ("before=1:\uff11", "before"),
    ("before=nan:1", "before"), ("before=1e999:1", "before"),
])
def test_api_odd_numbers_are_400_with_the_headers(gateway: Gateway, query: str,
                                                  param: str) -> None:
    reply = httpx.get(f"{gateway.base}/ui/api/requests?{query}",
                      headers={"authorization": f"Bearer {MASTER}"})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == param
    assert reply.headers["cache-control"] == "no-store"
    assert reply.headers["content-security-policy"].startswith("default-src 'none'")


def test_api_errors_of_every_status_carry_the_headers(gateway: Gateway) -> None:
    master = {"authorization": f"Bearer {MASTER}"}
    replies = {
        401: httpx.get(gateway.base + "/ui/api/overview"),
        403: httpx.get(gateway.base + "/ui/api/overview",
                       headers={"authorization": f"Bearer {gateway.key}"}),
        404: httpx.get(gateway.base + "/ui/api/nothing-here", headers=master),
        405: httpx.post(gateway.base + "/ui/api/overview", headers=master),
    }
    for status, reply in replies.items():
        assert reply.status_code == status, (status, reply.text)
        assert reply.json()["error"]["message"]
        assert reply.headers.get("cache-control") == "no-store", status
        assert reply.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in reply.headers["content-security-policy"]
    oldest = httpx.get(gateway.base + f"/ui/api/requests?before=1e10:{2**63 - 1}",
                       headers=master)
    assert oldest.status_code == 200 and len(oldest.json()["rows"]) > 0


def test_tables_fit_their_panels_and_reasons_are_clamped(page: Page) -> None:
    """Found by the new-user run: at 1400 px the keys table hid its last column behind a
    scrollbar, the audit log hid three, and a learned-router reason made each request-log
    row ten lines tall."""
    for panel in ("#panel-keys", "#panel-guard", "#panel-requests"):
        scroll, client = page.locator(panel).evaluate(
            "p => [p.scrollWidth, p.clientWidth]")
        assert scroll <= client + 1, (panel, scroll, client)
    reason = page.locator('#requests tbody td.reason .clamp').first
    line = float(reason.evaluate("d => parseFloat(getComputedStyle(d).lineHeight)"))
    assert reason.evaluate("d => d.title") != ""
    assert reason.bounding_box()["height"] <= 2 * line + 1
