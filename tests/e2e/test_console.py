"""The auditor console in a real browser (Debian's Chromium driven by Playwright) on the embedded stack:
sign in from the link `up` prints, search a debtor, read the timeline, filter alerts, render reports,
verify the chain. Screenshots go to tests/artifacts/ (not committed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client
from playwright.sync_api import Browser, Page, expect, sync_playwright

from deploy.auditor.tokens import TokenStore
from deploy.supervisor import EmbeddedStack
from tests.e2e.auditor_data import Trail, seed

pytestmark = pytest.mark.stack
CHROMIUM = "/usr/bin/chromium"  # Debian's, installed by `make test`; Playwright never downloads a browser
ARTIFACTS = Path(__file__).parents[1] / "artifacts"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
    yield context.new_page()
    context.close()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)


def test_an_auditor_finds_a_debtor_its_alerts_and_the_reports(stack: EmbeddedStack, clickhouse: Client,
                                                               page: Page) -> None:
    trail: Trail = seed(stack, clickhouse)
    token = TokenStore(stack.settings.tokens_path).create("console-test", "auditor")
    base = f"http://{stack.settings.http_host}:{stack.settings.http_port}"
    page.goto(f"{base}/#token={token}")
    expect(page.locator("#who")).to_have_text("console-test · auditor")
    assert "token" not in page.url  # the token leaves the address bar at once
    expect(page.locator("#overview-cards")).to_contain_text("actions stored")
    expect(page.locator("#overview-chart .bar").first).to_be_visible()
    page.fill("#from", "2024-03-01")
    page.fill("#to", "2024-05-31")
    shot(page, "overview")

    page.click("text=Debtor timeline")
    page.fill("#debtor-id", trail.debtor)
    page.click("text=Show timeline")
    result = page.locator("#debtor-result")
    expect(result).to_contain_text("不還錢小心你全家出事")
    expect(result).to_contain_text("2024-05-02 23:30:00")  # the debtor's local time
    expect(result).to_contain_text("QUIET_HOURS")
    expect(result).to_contain_text("COMPLAINT_RESOLVED")
    expect(result.locator("tr.alert")).to_have_count(
        clickhouse.query("SELECT count() FROM audit.alerts FINAL WHERE debtor_id = {d:String}",
                         parameters={"d": trail.debtor}).result_rows[0][0])
    shot(page, "timeline")

    page.click("nav >> text=Alerts")
    page.select_option("#alerts-severity", "CRITICAL")
    page.fill("#alerts-agency", trail.agency)
    page.click("#alerts-form >> text=Filter")
    alerts = page.locator("#alerts-result")
    expect(alerts).to_contain_text("1 alerts")
    expect(alerts).to_contain_text("THREAT")
    expect(alerts.locator("tbody tr")).to_have_count(1)
    with page.expect_download() as download:
        page.click("#alerts-csv")
    assert "THREAT" in Path(download.value.path()).read_text(encoding="utf-8")
    shot(page, "alerts")

    page.click("nav >> text=Reports")
    page.select_option("#report-name", "quiet-hours")
    page.fill("#report-agency", trail.agency)
    page.click("text=Show report")
    flagged = page.locator(".heat .cell.flagged")
    expect(flagged).to_have_count(1)  # Thursday 23:00, the quiet-hours alert
    expect(flagged).to_have_attribute("title", "Thu 23:00 — 1 contacts, 1 quiet-hours alerts")
    shot(page, "report-quiet-hours")
    page.select_option("#report-name", "complaint-sla")
    page.click("text=Show report")
    expect(page.locator("#report-result")).to_contain_text("RESOLVED_IN_TIME")
    page.select_option("#report-name", "contacts-per-day")
    page.fill("#report-agency", trail.agency)
    page.click("text=Show report")
    expect(page.locator("#report-result tr.over")).to_have_count(1)
    shot(page, "report-contacts")

    page.click("text=Verify the trail")
    page.fill("#verify-debtor", trail.debtor)
    page.click("#verify-form >> text=Verify")
    expect(page.locator(".verdict")).to_have_text("The chain is intact: no row was altered, removed or inserted.")
    shot(page, "verify")


def test_a_refused_token_is_sent_back_to_sign_in(stack: EmbeddedStack, page: Page) -> None:
    page.goto(f"http://{stack.settings.http_host}:{stack.settings.http_port}/#token=ca_wrong")
    expect(page.locator("#signin")).to_be_visible()
    expect(page.locator("#signin-error")).to_contain_text("unknown token")
    expect(page.locator("#nav")).to_be_hidden()
