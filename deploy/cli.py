"""The `collection-audit` command line. Settings come from the environment (deploy/settings.py);
flags override them. Every command that needs Kafka finds it through KAFKA_BOOTSTRAP_SERVERS or
--bootstrap, defaulting to the embedded broker that `collection-audit up` starts."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Annotated, BinaryIO

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from deploy.auditor.tokens import TokenStore
from deploy.auditor_cli import api, query_app, tokens_app, verify
from deploy.clickhouse_client import CORRUPTED_EXIT_CODE
from deploy.live_view import LiveCounts, counts_table
from deploy.rules_cli import alerts, rules_app
from deploy.settings import Settings, SettingsError, load_settings
from deploy.supervisor import EmbeddedStack
from producers.jsonl_import import ImportReport, validated_lines
from producers.sdk import AuditProducer
from producers.simulator import CORE_RULES, SimConfig, SimProgress, Simulation, run_simulation
from schemas.catalog import Catalog, CatalogError
from schemas.compatibility import evolution_errors

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Audit trail and compliance monitor for debt collection.")
schemas_app = typer.Typer(no_args_is_help=True, help="The Avro contract: list, show, check, register.")
topics_app = typer.Typer(no_args_is_help=True, help="Kafka topics as data (deploy/kafka/topics.toml).")
app.add_typer(schemas_app, name="schemas")
app.add_typer(topics_app, name="topics")
app.add_typer(rules_app, name="rules")
app.add_typer(query_app, name="query")
app.add_typer(tokens_app, name="tokens")
app.command()(alerts)
app.command()(verify)
app.command()(api)
err = Console(stderr=True)
out = Console()

Bootstrap = Annotated[str | None, typer.Option("--bootstrap", help="Kafka bootstrap servers "
                      "[env: KAFKA_BOOTSTRAP_SERVERS; default: the embedded broker 127.0.0.1:19092]")]
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="State and outbox directory "
                    "[env: COLLECTION_AUDIT_DATA_DIR; default: ./.collection-audit]")]


def quiet_kafka_logs() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    # kafka-python's IO thread warns whenever our CPU work holds the GIL for >100 ms: not actionable
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)


def settings_from(bootstrap: str | None = None, **overrides: object) -> Settings:
    try:
        return load_settings().replace(kafka_bootstrap_servers=bootstrap, **overrides)
    except SettingsError as exc:
        err.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from None


class StopFlag:
    """Set by the first Ctrl-C/SIGTERM; a second Ctrl-C interrupts at once."""

    def __init__(self) -> None:
        self.event = threading.Event()
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()
        err.print("[yellow]stopping... (Ctrl-C again to force)[/]")

    def __call__(self) -> bool:
        return self.event.is_set()


@app.command()
def up(
    data_dir: DataDir = None,
    http_port: Annotated[int | None, typer.Option(help="HTTP port [default: 8700]")] = None,
    kafka_port: Annotated[int | None, typer.Option(help="Embedded broker port [default: 19092]")] = None,
    simulate: Annotated[bool, typer.Option(help="Also run the simulator against the stack")] = False,
    rate: Annotated[float, typer.Option(help="Simulated events per second")] = 200.0,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds")] = None,
    violation_rate: Annotated[float, typer.Option(help="Share of simulated items that violate a rule")] = 0.01,
    labels: Annotated[Path | None, typer.Option(help="Write labelled violations (JSON lines) here")] = None,
    store_processes: Annotated[int | None, typer.Option(min=1, help="Store consumers, one process (core) each "
                                                                   "[env: COLLECTION_AUDIT_STORE_PROCESSES; "
                                                                   "default: 1]")] = None,
) -> None:
    """Start the embedded stack: broker, topics, store and rule consumers, HTTP server (ingest, registry,
    auditor API and console, /healthz, /metrics)."""
    quiet_kafka_logs()
    settings = settings_from(data_dir=data_dir, http_port=http_port, kafka_port=kafka_port,
                             store_processes=store_processes)
    stop = StopFlag()
    stack = EmbeddedStack(settings)
    try:
        stack.start()
    except Exception as exc:
        err.print(f"[red]could not start the stack:[/] {exc}")
        raise typer.Exit(1) from None
    base = settings.api_base_url
    err.print(f"[green]up[/]: Kafka {settings.bootstrap_servers}"
              f"{' (embedded, in memory)' if settings.embedded_broker else ''} · ingest {base}/v1/events · "
              f"registry {base}/subjects · auditor API {base}/api/v1 · metrics {base}/metrics · Ctrl-C stops")
    console_token = TokenStore(settings.tokens_path).create("console", "auditor", timedelta(hours=12))
    err.print(f"auditor console: {base}/#token={console_token}  (an auditor token valid 12 h; "
              "`collection-audit tokens create` makes lasting ones)", soft_wrap=True)
    progress = SimProgress()
    started = time.monotonic()
    try:
        if simulate:
            assert stack.producer is not None
            sim_thread = _start_simulator(stack.producer, progress, rate, None, violation_rate, labels, stop)
        with LiveCounts("collection-audit up", lambda: _up_counts(stack.producer, progress, started, stack)) as view:
            while not stop() and (duration is None or time.monotonic() - started < duration):
                if (simulate and not sim_thread.is_alive()) or stack.failures:
                    break
                view.refresh()
                time.sleep(0.25)
        stop.event.set()
        if simulate:
            sim_thread.join()
    finally:
        stack.stop()
        counts = _up_counts(None, progress, started, stack)
    err.print(counts_table("summary", counts))
    for role, failure in stack.failures.items():
        _exit_on_role_failure(role, failure)
    if settings.embedded_broker:
        err.print("The embedded broker kept its data in memory; it is gone now that the stack stopped.")
    err.print(f"The audit trail is in ClickHouse ({settings.clickhouse}). Query it, for example:\n"
              f"  collection-audit sql --data-dir {settings.data_dir} "
              "\"SELECT action_type, count() FROM audit.actions FINAL GROUP BY action_type\"")


def _up_counts(producer: AuditProducer | None, progress: SimProgress, started: float,
               stack: EmbeddedStack | None = None) -> dict[str, str | int | float]:
    elapsed = max(time.monotonic() - started, 1e-9)
    counts: dict[str, str | int | float] = {"running for (s)": round(elapsed)}
    if progress.sent:
        counts.update({"simulated events sent": progress.sent, "events/s": round(progress.sent / elapsed),
                       "labelled violations": progress.labelled,
                       "simulated event time": progress.sim_time.isoformat(timespec="minutes")
                       if progress.sim_time else "-"})
    if producer is not None:
        counts.update({"delivered to Kafka": producer.sent, "waiting in outbox": producer.pending()})
    if stack is not None and stack.with_store:
        counts.update({"actions stored": stack.stored("audit.actions"),
                       "alerts raised": stack.alerts_raised(),
                       "reference events stored": stack.stored("audit.reference_events"),
                       "alerts stored": stack.stored("audit.alerts"),
                       "dead letters": stack.stored("audit.dead_letters"),
                       "store consumer lag": stack.store_lag()})
        held = stack.partitions_held()
        if held is not None:  # while the roles run (not in the summary)
            counts["partitions held (store / rules)"] = held
        free = stack.disk_free()
        if free is not None:
            counts["ClickHouse disk free"] = f"{free:.0%}" + (" (inserts refused below 10%)" if free < 0.15 else "")
    return counts


def _start_simulator(producer: AuditProducer, progress: SimProgress, rate: float, duration: float | None,
                     violation_rate: float, labels: Path | None, stop: StopFlag,
                     config: SimConfig | None = None) -> threading.Thread:
    sim = Simulation(config or SimConfig(violation_rate=violation_rate))

    def run() -> None:
        label_file = labels.open("w", encoding="utf-8") if labels else None
        try:
            run_simulation(sim, producer.emit_many, rate=rate, duration_s=duration, labels=label_file,
                           progress=progress, should_stop=stop)
        finally:
            if label_file:
                label_file.close()

    thread = threading.Thread(target=run, name="simulator", daemon=True)
    thread.start()
    return thread


@app.command()
def simulate(
    rate: Annotated[float, typer.Option(help="Events per second")] = 200.0,
    duration: Annotated[float | None, typer.Option(help="Seconds to run [default: until Ctrl-C]")] = None,
    violation_rate: Annotated[float, typer.Option(help="Share of items that start a violation scenario")] = 0.01,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same events and ids")] = 7,
    debtors: Annotated[int, typer.Option(help="Number of baseline debtors")] = 2000,
    rules: Annotated[str | None, typer.Option(help="Comma-separated rule ids to violate [default: all core]")] = None,
    labels: Annotated[Path | None, typer.Option(help="Write labelled events (JSON lines) to this file")] = None,
    bootstrap: Bootstrap = None,
    data_dir: DataDir = None,
) -> None:
    """Send realistic simulated collection activity, with labelled violations, to Kafka."""
    chosen = tuple(r.strip() for r in rules.split(",")) if rules else tuple(CORE_RULES)
    unknown = [r for r in chosen if r not in CORE_RULES]
    if unknown:
        err.print(f"[red]unknown rule ids:[/] {', '.join(unknown)}; known: {', '.join(CORE_RULES)}")
        raise typer.Exit(2)
    settings = settings_from(bootstrap, data_dir=data_dir)
    stop = StopFlag()
    progress = SimProgress()
    started = time.monotonic()
    config = SimConfig(seed=seed, debtors=debtors, violation_rate=violation_rate, rules=chosen)
    with AuditProducer.from_settings(settings, name="simulator") as producer:
        thread = _start_simulator(producer, progress, rate, duration, violation_rate, labels, stop, config)
        with LiveCounts("simulate", lambda: _up_counts(producer, progress, started)) as view:
            while thread.is_alive():
                view.refresh()
                thread.join(0.25)
        left = producer.flush(10)
    err.print(f"sent {progress.sent:,} events ({progress.labelled:,} labelled violations)"
              + (f"; {left:,} wait in the outbox" if left else ""))


@app.command()
def produce(
    file: Annotated[str, typer.Argument(help="JSON-lines file, or - for standard input")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate only; send nothing")] = False,
    batch: Annotated[int, typer.Option(help="Events per send")] = 1000,
    bootstrap: Bootstrap = None,
    data_dir: DataDir = None,
) -> None:
    """Send a JSON-lines file of actions and reference events to Kafka, in file order.

    Rejected lines are reported (line, field, reason) and not sent; the exit code is 1 if any line
    was rejected, 0 otherwise."""
    stream: BinaryIO
    total = None
    if file == "-":
        stream = sys.stdin.buffer
    else:
        path = Path(file)
        if not path.is_file():
            err.print(f"[red]no such file:[/] {file}")
            raise typer.Exit(2)
        stream, total = path.open("rb"), path.stat().st_size
    report = ImportReport()
    producer = None if dry_run else AuditProducer.from_settings(settings_from(bootstrap, data_dir=data_dir),
                                                                 name="import")
    columns = [TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn()]
    try:
        with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
            task = bar.add_task("validating" if dry_run else "sending", total=total)
            pending = []
            for event in validated_lines(stream, report, on_bytes=lambda n: bar.advance(task, n)):
                pending.append(event)
                if len(pending) >= batch:
                    if producer:
                        producer.send_validated(pending)
                    pending = []
            if producer and pending:
                producer.send_validated(pending)
    finally:
        left = producer.close(timeout_s=10) if producer else 0
        stream.close()
    for rejected in report.rejected:
        for error in rejected.errors:
            out.print(f"line {rejected.line}: {error.field}: {error.problem}", markup=False, highlight=False)
    verb = "valid" if dry_run else "sent"
    err.print(f"{report.lines:,} lines: {report.accepted:,} {verb}, {len(report.rejected):,} rejected"
              + (f", {report.blank:,} blank" if report.blank else "")
              + (f"; {left:,} wait in the outbox and are delivered when Kafka is back" if left else ""))
    raise typer.Exit(1 if report.rejected else 0)


@app.command()
def ingest(bootstrap: Bootstrap = None, data_dir: DataDir = None,
           http_port: Annotated[int | None, typer.Option(help="HTTP port [default: 8700]")] = None) -> None:
    """Serve the HTTP ingest endpoint on its own (POST /v1/events, the schema registry, /healthz, /metrics):
    the `ingest` role of a cluster deployment. Events Kafka cannot take yet wait in the outbox."""
    from prometheus_client import CollectorRegistry

    from deploy.http_server import HttpServer, create_app, kafka_reachable
    from producers.metrics import register_producer

    quiet_kafka_logs()
    settings = settings_from(bootstrap, data_dir=data_dir, http_port=http_port)
    registry = CollectorRegistry()
    producer = AuditProducer.from_settings(settings, name="ingest")
    register_producer(registry, producer, "ingest")
    app_ = create_app(Catalog.load(), registry, producer=producer, max_body_bytes=settings.ingest_max_body_bytes,
                      max_events=settings.ingest_max_events, ingest_per_s=settings.ingest_requests_per_s,
                      health=lambda: {"kafka": kafka_reachable(settings.bootstrap_servers)})
    HttpServer(app_, settings.http_host, settings.http_port).serve(StopFlag(), lambda: err.print(
        f"ingest on http://{settings.http_host}:{settings.http_port}/v1/events → Kafka {settings.bootstrap_servers}"
        " · Ctrl-C stops"))
    left = producer.close(timeout_s=10)
    if left:
        err.print(f"[yellow]{left} events wait in the outbox {settings.outbox_dir}[/] until the next start")


@app.command()
def migrate(clickhouse_url: Annotated[str | None, typer.Option(
        "--clickhouse-url", help="[env: CLICKHOUSE_URL; default: embedded chDB in the data directory]")] = None,
        data_dir: DataDir = None,
        cluster: Annotated[str | None, typer.Option(help="Apply the cluster form (replicated local tables + "
                           "Distributed tables) for this remote_servers cluster "
                           "[env: COLLECTION_AUDIT_CLICKHOUSE_CLUSTER]")]
        = None,
        replication: Annotated[bool, typer.Option(help="Cluster: Replicated* local engines (off: shards of one "
                               "replica each)")] = True,
        distributed_ddl: Annotated[bool, typer.Option(help="Cluster: ON CLUSTER statements (off: apply to the "
                                   "connected node only, once per node)")] = True,
        print_only: Annotated[bool, typer.Option("--print", help="Print the statements instead of applying them")]
        = False) -> None:
    """Apply the ClickHouse migrations of deploy/clickhouse/ that are not applied yet (idempotent)."""
    from deploy.clickhouse_client import ClickHouseUnavailable, trail_client
    from deploy.cluster_ddl import ClusterDdlError, cluster_statements, ledger_statements
    from deploy.migrations import MigrationError, load_migrations
    from deploy.migrations import migrate as apply_migrations

    settings = settings_from(clickhouse_url=clickhouse_url, data_dir=data_dir, clickhouse_cluster=cluster)
    cluster = settings.clickhouse_cluster or None
    try:
        if print_only:
            statements = [s for m in load_migrations() for s in m.statements()]
            if cluster is not None:
                statements = (ledger_statements(cluster, replicated=replication, distributed_ddl=distributed_ddl)
                              + cluster_statements(statements, cluster, replicated=replication,
                                                   distributed_ddl=distributed_ddl))
            out.print(";\n\n".join(statements) + ";", markup=False, highlight=False, soft_wrap=True)
            return
        applied = apply_migrations(trail_client(settings), cluster=cluster,
                                   replicated=replication, distributed_ddl=distributed_ddl)
    except (ClickHouseUnavailable, MigrationError, ClusterDdlError) as exc:
        err.print(f"[red]migrate failed:[/] {exc}", soft_wrap=True)
        raise typer.Exit(1) from None
    where = f" on cluster {cluster}" if cluster else ""
    for migration in applied:
        err.print(f"applied {migration.version:04d}_{migration.name}{where}")
    err.print("schema up to date" if not applied else f"{len(applied)} migration(s) applied{where}")


EXIT_CORRUPTED = CORRUPTED_EXIT_CODE  # the store found a part ClickHouse cannot read back: restart it
_CORRUPTED_HINT = ("nothing of the batch was committed; restart the store: embedded chDB detaches a broken part "
                   "at start and restores the parts it replaced; on a server see docs/operations.md")


def _exit_on_role_failure(role: str, failure: BaseException) -> None:
    """`up` lost a consumer role: say why and exit non-zero (3 for corrupted data), so that whatever
    supervises `up` restarts it rather than leave a stack running without its store or rules."""
    from deploy.clickhouse_client import ClickHouseCorrupted

    if isinstance(failure, ClickHouseCorrupted):
        err.print(f"[red]up stopped: the {role} consumer found corrupted data[/] ({_CORRUPTED_HINT}): {failure}",
                  soft_wrap=True)
        raise typer.Exit(EXIT_CORRUPTED)
    err.print(f"[red]up stopped: the {role} consumer failed[/] ({type(failure).__name__}: {failure}; "
              f"the log above has the traceback)", soft_wrap=True)
    raise typer.Exit(1)


@app.command()
def store(bootstrap: Bootstrap = None, data_dir: DataDir = None,
          clickhouse_url: Annotated[str | None, typer.Option("--clickhouse-url", help="[env: CLICKHOUSE_URL]")] = None,
          metrics_port: Annotated[int | None, typer.Option(help="Serve /metrics and /healthz on this port (the "
                                                                    "other processes on the ports after it)")] = None,
          processes: Annotated[int | None, typer.Option(
              min=1, help="Store consumers, one process (core) each: above 1, this process starts and supervises "
                          "them (on embedded chDB serving them its data directory through a relay) "
                          "[env: COLLECTION_AUDIT_STORE_PROCESSES; default: 1]")] = None,
          ) -> None:
    """Run the store consumer: every event enriched, hash-chained and stored in ClickHouse once."""
    from prometheus_client import CollectorRegistry

    from consumers.store_consumer import GROUP
    from consumers.topic_reader import TopicMissing
    from deploy.clickhouse_client import ClickHouseCorrupted, ClickHouseUnavailable, trail_client
    from deploy.http_server import polling_health, serve_operations
    from deploy.migrations import MigrationError, ensure_schema
    from deploy.store_processes import StoreProcesses, StoreProcessExited

    quiet_kafka_logs()
    settings = settings_from(bootstrap, data_dir=data_dir, clickhouse_url=clickhouse_url, store_processes=processes)
    registry = CollectorRegistry()
    others = StoreProcesses(settings, settings.store_processes, metrics_port)
    if metrics_port:
        serve_operations(settings, registry, metrics_port, others.health if others.count else polling_health(
            registry, "collection_audit_last_poll_timestamp_seconds", {"group": GROUP}))
    stop = StopFlag()
    try:
        client = trail_client(settings)
        ensure_schema(client, settings.clickhouse_cluster)  # once, before the other processes start
        processor = others.start().run_role(registry, lambda: stop() or others.failure() is not None, client)
        failure = others.failure()
        if failure is not None:
            raise failure
    except (ClickHouseUnavailable, MigrationError, TopicMissing) as exc:
        err.print(f"[red]store cannot start:[/] {exc}", soft_wrap=True)
        raise typer.Exit(1) from None
    except ClickHouseCorrupted as exc:
        err.print(f"[red]store stopped, ClickHouse returned corrupted data[/] ({_CORRUPTED_HINT}): {exc}",
                  soft_wrap=True)
        raise typer.Exit(EXIT_CORRUPTED) from None
    except StoreProcessExited as exc:
        err.print(f"[red]store stopped:[/] {exc}; the others were stopped", soft_wrap=True)
        raise typer.Exit(1) from None
    finally:
        others.stop()
    if processor is None:
        err.print(f"store stopped with its {others.count} processes; what they held unstored will be replayed")
    else:
        err.print(f"store stopped; {processor.pending()} records were left unstored (they will be replayed)")


@app.command()
def sql(query: Annotated[str, typer.Argument(help="A SELECT, SHOW or DESCRIBE statement")],
        data_dir: DataDir = None,
        clickhouse_url: Annotated[str | None, typer.Option("--clickhouse-url", help="[env: CLICKHOUSE_URL]")] = None,
        output: Annotated[str, typer.Option(help="table, csv or json")] = "table") -> None:
    """Run a read-only query against the trail (operators; auditors use the access-logged API).
    With embedded chDB, stop `up` first: one process at a time may open its data directory."""
    from deploy.clickhouse_client import ClickHouseUnavailable, connect

    settings = settings_from(data_dir=data_dir, clickhouse_url=clickhouse_url)
    try:
        result = connect(settings.clickhouse).query(query, settings={"readonly": 1})
    except ClickHouseUnavailable as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    except Exception as exc:
        err.print(f"[red]query failed:[/] {exc}", soft_wrap=True)
        raise typer.Exit(1) from None
    names = list(result.column_names)
    if output == "json":
        for row in result.result_rows:
            out.print_json(json.dumps(dict(zip(names, row, strict=True)), default=str, ensure_ascii=False))
    elif output == "csv":
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(names)
        writer.writerows(result.result_rows)
    else:
        from rich.table import Table

        table = Table(*names)
        for row in result.result_rows:
            table.add_row(*("" if v is None else str(v) for v in row))
        out.print(table)


@schemas_app.command("list")
def schemas_list() -> None:
    """Subjects, versions and schema ids of the catalog."""
    catalog = Catalog.load()
    for subject in catalog.subjects():
        for v in catalog.versions(subject):
            out.print(f"{subject}\tv{v.version}\tid {v.schema_id}\t{v.schema.get('name')}")


@schemas_app.command("show")
def schemas_show(subject: str, version: Annotated[int | None, typer.Option()] = None) -> None:
    """Print a schema (the latest version unless --version)."""
    catalog = Catalog.load()
    try:
        versions = catalog.versions(subject)
    except KeyError:
        err.print(f"[red]no subject {subject!r};[/] subjects: {', '.join(catalog.subjects())}")
        raise typer.Exit(2) from None
    chosen = versions[-1] if version is None else versions[version - 1]
    out.print_json(json.dumps(chosen.schema))


@schemas_app.command("check")
def schemas_check(catalog_file: Annotated[Path | None, typer.Option(
        "--catalog", help="A catalog.json to check [default: the installed one]")] = None) -> None:
    """Fail if any version of any subject is not BACKWARD compatible with every earlier one."""
    try:
        catalog = Catalog.load(catalog_file) if catalog_file else Catalog.load()
    except CatalogError as exc:
        err.print(f"[red]bad catalog:[/] {exc}")
        raise typer.Exit(1) from None
    problems = [f"{s}: {e}" for s in catalog.subjects()
                for e in evolution_errors([v.schema for v in catalog.versions(s)])]
    for problem in problems:
        err.print(f"[red]incompatible:[/] {problem}", soft_wrap=True)
    if problems:
        raise typer.Exit(1)
    err.print(f"[green]ok[/]: {len(catalog.subjects())} subjects, every version backward compatible")


@schemas_app.command("register")
def schemas_register(url: Annotated[str | None, typer.Option(help="[env: SCHEMA_REGISTRY_URL]")] = None) -> None:
    """Register every catalog version, in order, with a Confluent-compatible registry (operators only)."""
    import urllib.request

    registry_url = (url or settings_from().schema_registry_url).rstrip("/")
    if not registry_url:
        err.print("[red]no registry:[/] pass --url or set SCHEMA_REGISTRY_URL")
        raise typer.Exit(2)
    catalog = Catalog.load()
    for subject in catalog.subjects():
        for v in catalog.versions(subject):
            request = urllib.request.Request(
                f"{registry_url}/subjects/{subject}/versions", method="POST",
                data=json.dumps({"schema": v.canonical}).encode(),
                headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
            with urllib.request.urlopen(request, timeout=10) as response:
                registered = json.loads(response.read())["id"]
            note = "" if registered == v.schema_id else f" (registry id {registered}, catalog id {v.schema_id})"
            out.print(f"{subject} v{v.version}: registered{note}")


@topics_app.command("apply")
def topics_apply(bootstrap: Bootstrap = None,
                 single_node: Annotated[bool, typer.Option(help="Replication 1 (one broker)")] = False) -> None:
    """Make Kafka match deploy/kafka/topics.toml: create missing topics, set differing configs (idempotent);
    exits 1 on drift it will not fix (a partition count)."""
    from deploy.topics import apply_topics, load_topic_specs

    settings = settings_from(bootstrap)
    report = apply_topics(settings.kafka_client_config(), load_topic_specs(),
                          single_node=single_node or settings.embedded_broker)
    for name, configs in report.altered.items():
        err.print(f"altered {name}: " + ", ".join(f"{k}={v}" for k, v in configs.items()))
    for problem in report.problems:
        err.print(f"[yellow]drift:[/] {problem}")
    err.print(f"created: {', '.join(report.created)}" if report.created else "all topics exist")
    if report.problems:
        raise typer.Exit(1)

if __name__ == "__main__":
    app()
