"""The auditor's commands: `api` (serve the API and console), `tokens` (who may use it), and
`query` / `verify`, which go through the API with a token so that every question is access-logged."""

from __future__ import annotations

import csv
import json
import sys
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.console import Console
from rich.table import Table

from deploy.auditor.tokens import ROLES, TokenError, TokenStore

tokens_app = typer.Typer(no_args_is_help=True, help="API tokens: create (shown once), list, revoke.")
query_app = typer.Typer(no_args_is_help=True, help="Ask the trail through the auditor API (token required).")
err = Console(stderr=True)
out = Console()

Since = Annotated[str | None, typer.Option("--from", help="Start, ISO date or time (UTC unless an offset) "
                                           "[default: 90 days before --to]")]
Until = Annotated[str | None, typer.Option("--to", help="End, exclusive [default: now]")]
Output = Annotated[str, typer.Option("--output", "-o", help="table, csv or json")]
Agency = Annotated[str | None, typer.Option(help="Only this agency")]


def _settings() -> Any:
    from deploy.cli import settings_from

    return settings_from()


@tokens_app.command("create")
def tokens_create(name: str, role: Annotated[str, typer.Option(help=f"One of {', '.join(ROLES)}")] = "auditor",
                  expires_days: Annotated[float | None, typer.Option(help="Valid for this many days "
                                                                     "[default: no expiry]")] = None) -> None:
    """Create (or replace) a named token and print it once; only its hash is kept."""
    store = TokenStore(_settings().tokens_path)
    try:
        token = store.create(name, role, timedelta(days=expires_days) if expires_days else None)
    except TokenError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    err.print(f"token {name!r} ({role}) created in {store.path}; it is shown only now:")
    print(token)


@tokens_app.command("list")
def tokens_list() -> None:
    """Names, roles and expiry of the tokens (never the tokens themselves)."""
    store = TokenStore(_settings().tokens_path)
    table = Table("name", "role", "created", "expires")
    for record in store.records():
        table.add_row(record.name, record.role, record.created_at, record.expires_at or "never")
    out.print(table)


@tokens_app.command("revoke")
def tokens_revoke(name: str) -> None:
    """Remove a token; a running API refuses it from the next request on."""
    if not TokenStore(_settings().tokens_path).revoke(name):
        err.print(f"[red]no token named {name!r}[/]")
        raise typer.Exit(1)
    err.print(f"token {name!r} revoked")


def _get(path: str, params: dict[str, Any]) -> Any:
    import httpx

    settings = _settings()
    if not settings.api_token:
        err.print("[red]no token:[/] set COLLECTION_AUDIT_API_TOKEN (an admin creates one with "
                  "`collection-audit tokens create NAME --role auditor`)")
        raise typer.Exit(2)
    try:
        response = httpx.get(f"{settings.api_base_url}/api/v1{path}", timeout=300,
                             params={k: v for k, v in params.items() if v is not None},
                             headers={"Authorization": f"Bearer {settings.api_token}"})
    except httpx.HTTPError as exc:
        err.print(f"[red]cannot reach the API at {settings.api_base_url}:[/] {exc} (is `collection-audit up` or "
                  "`collection-audit api` running? COLLECTION_AUDIT_API_URL says where)")
        raise typer.Exit(1) from None
    if response.status_code != 200:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        message = detail if isinstance(detail, str) else json.dumps(detail, ensure_ascii=False)
        err.print(f"[red]{response.status_code}:[/] {message}", soft_wrap=True)
        raise typer.Exit(1)
    return response.json()


def _print(columns: list[str], rows: list[list[Any]], output: str, title: str | None = None) -> None:
    if output == "json":
        for row in rows:
            print(json.dumps(dict(zip(columns, row, strict=True)), ensure_ascii=False, default=str))
    elif output == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        table = Table(*columns, title=title)
        for row in rows:
            table.add_row(*("" if v is None else str(v) for v in row))
        out.print(table)


def _print_page(body: dict[str, Any], output: str, columns: list[str] | None = None) -> None:
    records = body["rows"]
    names = columns or (list(records[0]) if records else [])
    _print(names, [[r.get(c) for c in names] for r in records], output)
    if body.get("next_cursor"):
        err.print(f"more rows: --cursor {body['next_cursor']}")


@query_app.command("actions")
def query_actions(since: Since = None, until: Until = None, agency: Agency = None,
                  collector: Annotated[str | None, typer.Option()] = None,
                  debtor: Annotated[str | None, typer.Option()] = None,
                  action_type: Annotated[str | None, typer.Option()] = None,
                  limit: Annotated[int, typer.Option()] = 100, cursor: Annotated[str | None, typer.Option()] = None,
                  output: Output = "table") -> None:
    """Collection actions in event time (PII masked)."""
    body = _get("/actions", {"from": since, "to": until, "agency": agency, "collector": collector,
                             "debtor": debtor, "action_type": action_type, "limit": limit, "cursor": cursor})
    _print_page(body, output, None if output != "table" else [
        "occurred_at", "local_time", "debtor_id", "agency_id", "collector_id", "action_type", "direction",
        "message_text"])


@query_app.command("timeline")
def query_timeline(debtor: str, since: Since = None, until: Until = None,
                   limit: Annotated[int, typer.Option()] = 500, output: Output = "table") -> None:
    """A debtor's actions, reference events and alerts in event time, with debtor-local times."""
    body = _get(f"/debtors/{quote(debtor, safe='')}/timeline", {"from": since, "to": until, "limit": limit})
    _print_page(body, output, None if output != "table" else [
        "local_time", "kind", "type", "channel", "agency_id", "collector_id", "severity", "text"])


@query_app.command("alerts")
def query_alerts(since: Since = None, until: Until = None, agency: Agency = None,
                 rule: Annotated[str | None, typer.Option()] = None,
                 severity: Annotated[str | None, typer.Option()] = None,
                 debtor: Annotated[str | None, typer.Option()] = None,
                 limit: Annotated[int, typer.Option()] = 100, cursor: Annotated[str | None, typer.Option()] = None,
                 output: Output = "table") -> None:
    """Alerts in event time."""
    body = _get("/alerts", {"from": since, "to": until, "agency": agency, "rule": rule, "severity": severity,
                            "debtor": debtor, "limit": limit, "cursor": cursor})
    _print_page(body, output, None if output != "table" else [
        "occurred_at", "rule_id", "severity", "debtor_id", "agency_id", "summary"])


@query_app.command("report")
def query_report(name: Annotated[str, typer.Argument(help="contacts-per-day, alerts-by-rule, collector-league, "
                                                   "complaint-sla or quiet-hours")],
                 since: Since = None, until: Until = None, agency: Agency = None,
                 debtor: Annotated[str | None, typer.Option()] = None,
                 rule: Annotated[str | None, typer.Option()] = None, output: Output = "table") -> None:
    """One of the reports."""
    body = _get(f"/reports/{name}", {"from": since, "to": until, "agency": agency, "debtor": debtor, "rule": rule})
    _print(body["columns"], body["rows"], output, title=body["title"])


def verify(debtor: Annotated[str | None, typer.Option(help="One debtor's chains")] = None, agency: Agency = None,
           since: Since = None, until: Until = None, output: Output = "table") -> None:
    """Recompute the hash chain (a debtor, an agency's debtors, or every chain in the months of the range) and
    list every altered, removed or inserted row. Exit code 1 if any."""
    body = _get("/verify", {"debtor": debtor, "agency": agency, "from": since, "to": until})
    if output == "json":
        print(json.dumps(body, ensure_ascii=False))
    else:
        columns = ["kind", "table", "chain_key", "month", "chain_seq", "row_id", "detail"]
        _print(columns, [[p[c] for c in columns] for p in body["problems"]], output)
        for name, tally in body["tables"].items():
            err.print(f"{name}: {tally['chains']:,} chains, {tally['rows']:,} rows, {tally['problems']:,} problems")
        err.print("[green]chain intact[/]" if body["ok"] else f"[red]{len(body['problems'])} problem(s)[/]")
    raise typer.Exit(0 if body["ok"] else 1)


def api(data_dir: Annotated[str | None, typer.Option("--data-dir", help="[env: COLLECTION_AUDIT_DATA_DIR]")] = None,
        http_port: Annotated[int | None, typer.Option(help="[default: 8700]")] = None) -> None:
    """Serve the auditor API (/api/v1, OpenAPI at /docs) and its console (/), read-only, over ClickHouse.
    With embedded chDB, one process opens a data directory: run this when `up` is not running."""
    from pathlib import Path

    from prometheus_client import CollectorRegistry

    from deploy.cli import StopFlag, settings_from
    from deploy.clickhouse_client import ClickHouseUnavailable, ClientPool, trail_client
    from deploy.http_server import HttpServer, create_app
    from deploy.migrations import MigrationError, ensure_schema
    from schemas.catalog import Catalog

    settings = settings_from(data_dir=Path(data_dir) if data_dir else None, http_port=http_port)
    try:
        ensure_schema(trail_client(settings), settings.clickhouse_cluster)
    except (ClickHouseUnavailable, MigrationError) as exc:
        err.print(f"[red]api cannot start:[/] {exc}", soft_wrap=True)
        raise typer.Exit(1) from None
    trail = ClientPool.for_trail(settings)
    app = create_app(Catalog.load(), CollectorRegistry(), trail=trail, api_per_s=settings.api_requests_per_s,
                     tokens=TokenStore(settings.tokens_path))
    HttpServer(app, settings.http_host, settings.http_port).serve(StopFlag(), lambda: err.print(
        f"auditor API on {settings.api_base_url}/api/v1 (OpenAPI: /docs), console {settings.api_base_url}/ "
        f"· tokens in {settings.tokens_path} · Ctrl-C stops"))
