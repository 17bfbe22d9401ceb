"""`collection-audit rules` (the rule consumer and its tools) and `collection-audit alerts`."""

from __future__ import annotations

import contextlib
import itertools
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

rules_app = typer.Typer(help="The rule consumer (no sub-command) and its tools: list, check, test, simulate.")
err = Console(stderr=True)
out = Console()
SEVERITY_STYLE = {"CRITICAL": "bold white on red", "HIGH": "bold red", "MEDIUM": "yellow", "LOW": "cyan"}


@rules_app.callback(invoke_without_command=True)
def rules(ctx: typer.Context,
          bootstrap: Annotated[str | None, typer.Option("--bootstrap", help="[env: KAFKA_BOOTSTRAP_SERVERS]")] = None,
          metrics_port: Annotated[int | None, typer.Option(help="Serve /metrics and /healthz on this port")] = None,
          alertmanager_url: Annotated[str | None, typer.Option(help="[env: COLLECTION_AUDIT_ALERTMANAGER_URL]")]
          = None) -> None:
    """Run the rule consumer: judge every action, emit alerts to collection.alerts and on-call."""
    if ctx.invoked_subcommand is not None:
        return
    from prometheus_client import CollectorRegistry

    from consumers.rule_consumer import run_rules
    from consumers.topic_reader import TopicMissing
    from deploy.cli import StopFlag, quiet_kafka_logs, settings_from
    from deploy.http_server import polling_health, serve_operations

    quiet_kafka_logs()
    settings = settings_from(bootstrap, alertmanager_url=alertmanager_url)
    registry = CollectorRegistry()
    if metrics_port:
        serve_operations(settings, registry, metrics_port,
                         polling_health(registry, "collection_audit_rules_last_poll_timestamp_seconds"))
    try:
        run_rules(settings, registry, StopFlag(), on_ready=lambda: err.print("rule consumer running (Ctrl-C stops)"))
    except TopicMissing as exc:
        err.print(f"[red]rules cannot start:[/] {exc}", soft_wrap=True)
        raise typer.Exit(1) from None


def _load() -> Any:
    from consumers.rules.ruleset import RuleFileError, load_ruleset
    from consumers.rules.text_match import Lexicon

    lexicon = Lexicon.from_directory()
    try:
        return load_ruleset(categories=lexicon.categories), lexicon
    except RuleFileError as exc:
        for problem in exc.problems:
            err.print(f"[red]{problem}[/]", soft_wrap=True)
        raise typer.Exit(2) from None


@rules_app.command("list")
def rules_list() -> None:
    """The rule catalog: id, version, severity, profiles and citation."""
    ruleset, _ = _load()
    table = Table("rule", "v", "severity", "CN", "US", "UK", "cites")
    for rule in ruleset.rules:
        kinds = [", ".join(c.kind for c in rule.clauses_for(j)) or "off" for j in ("CN", "US", "UK")]
        table.add_row(rule.id, str(rule.version), rule.severity, *kinds, rule.citation)
    out.print(table)


@rules_app.command("check")
def rules_check() -> None:
    """Load every rule file, class and lexicon; report problems with file and line."""
    ruleset, lexicon = _load()
    err.print(f"[green]{len(ruleset.rules)} rules, {len(ruleset.classes)} classes, "
              f"{len(lexicon.categories)} lexicon categories: OK[/]")


@rules_app.command("test")
def rules_test(path: Annotated[Path | None, typer.Argument(help="A case file or a directory of them "
                                                                 "[default: the shipped cases]")] = None) -> None:
    """Run rule case files (events in, expected alerts out) and print a pass/fail table."""
    from consumers.rules.case_files import case_paths, run_case_files
    from schemas.catalog import Catalog
    from schemas.codec import AvroCodec
    from schemas.registry import CatalogRegistry

    ruleset, lexicon = _load()
    paths = case_paths(path)
    if not paths:
        err.print(f"[red]no case files at {path}[/]")
        raise typer.Exit(2)
    table = Table("rule", "case", "result")
    failed = 0
    results = list(run_case_files(paths, ruleset, lexicon, AvroCodec(CatalogRegistry(Catalog.load()))))
    for r in results:
        failed += not r.passed
        table.add_row(r.rule, r.name, "[green]pass[/]" if r.passed else f"[red]FAIL[/] {r.problem}")
    out.print(table)
    out.print(f"{len(results) - failed} passed, {failed} failed, {len(paths)} files")
    if failed:
        raise typer.Exit(1)


@rules_app.command("simulate")
def rules_simulate(events: Annotated[int, typer.Option(help="Simulated events to judge")] = 100_000,
                   seed: Annotated[int, typer.Option()] = 7,
                   violation_rate: Annotated[float, typer.Option()] = 0.02) -> None:
    """Judge the simulator's labelled stream with the engine alone; print recall, precision and the
    confusion table per rule. Violations whose deadline lies beyond the end of the stream are pending."""
    from consumers.rules.simulator_check import check_simulation

    report = check_simulation(events, seed=seed, violation_rate=violation_rate, progress=err)
    table = Table("rule", "labelled", "detected", "missed", "false alarms", "pending")
    for rule in sorted(report.rules):
        c = report.rules[rule]
        table.add_row(rule, str(c["labelled"]), str(c["tp"]), str(c["fn"]), str(c["fp"]), str(c["pending"]))
    out.print(table)
    out.print(f"{report.events:,} events judged in {report.seconds:.1f} s ({report.events / report.seconds:,.0f}/s "
              f"on one core); recall {report.recall:.4f}, precision {report.precision:.4f}")
    if report.recall < 0.99 or report.precision < 0.99:
        raise typer.Exit(1)


def alerts(follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep streaming new alerts")] = False,
           bootstrap: Annotated[str | None, typer.Option("--bootstrap", help="[env: KAFKA_BOOTSTRAP_SERVERS]")]
           = None,
           last: Annotated[int, typer.Option(help="Show at most this many past alerts first")] = 20) -> None:
    """Alerts from collection.alerts, coloured by severity; --follow keeps streaming."""
    from kafka import KafkaConsumer
    from kafka.consumer.fetcher import ConsumerRecord

    from consumers.topic_reader import from_beginning, read_to_end
    from deploy.cli import quiet_kafka_logs, settings_from
    from schemas import TOPIC_ALERTS, value_subject
    from schemas.codec import AvroCodec, DecodeError
    from schemas.registry import registry_for

    quiet_kafka_logs()
    settings = settings_from(bootstrap)
    codec = AvroCodec(registry_for(settings.schema_registry_url))
    consumer = from_beginning(KafkaConsumer(**settings.kafka_client_config(), enable_auto_commit=False), TOPIC_ALERTS)
    backlog: list[dict[str, Any]] = []

    def decode(record: ConsumerRecord) -> None:
        with contextlib.suppress(DecodeError):
            backlog.append(codec.decode(value_subject(TOPIC_ALERTS), record.value).record)

    try:
        read_to_end(consumer, decode, timeout_s=60)  # the past first, newest last
    except TimeoutError as exc:
        consumer.close()
        err.print(f"[red]cannot read the alerts:[/] {exc}", soft_wrap=True)
        raise typer.Exit(1) from None
    backlog.sort(key=lambda a: a["detected_at"])
    for alert in backlog[-last:]:
        _print_alert(alert)
    seen = {a["alert_id"] for a in backlog}  # a re-emitted alert (same id) is shown once
    try:
        while follow:
            backlog.clear()
            for record in itertools.chain.from_iterable(consumer.poll(timeout_ms=500).values()):
                decode(record)
            for alert in backlog:
                if alert["alert_id"] not in seen:
                    seen.add(alert["alert_id"])
                    _print_alert(alert)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


def _print_alert(alert: dict[str, Any]) -> None:
    style = SEVERITY_STYLE.get(alert["severity"], "")
    late = " [dim](late)[/]" if alert["late"] else ""
    out.print(f"{alert['detected_at']:%Y-%m-%d %H:%M:%S} [{style}]{alert['severity']:<8}[/] "
              f"[bold]{alert['rule_id']}[/] {alert['summary']}{late} [dim]{alert['citation']}[/]", soft_wrap=True)
