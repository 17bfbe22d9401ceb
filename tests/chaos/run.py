"""The chaos run: a steady producer load of simulated events with a ledger of every id the SDK
acknowledged, while faults are injected one after another at random moments; then a reconciliation of
the ledger against ClickHouse and of the alerts against an uninterrupted judge of the same events.

Topology, all on one machine: the embedded broker (Tansu) behind a faulty link (every client reaches it
through tests/chaos/link.py), `collection-audit store` and `collection-audit rules` as child processes,
chDB on a small tmpfs of its own (so that it can be filled), the producer SDK in this process with its
outbox. Fault kinds:

- store_kill, rules_kill: SIGKILL of the role at a random moment, then a restart;
- supervisor_kill: the roles handed over to one `collection-audit up` process (on the same broker and
  chDB), which is SIGKILLed at a random moment; then the separate roles start again;
- clickhouse_outage: the store's disk filled to its last byte for 5-30 s, so every insert fails;
- broker_outage: the link cut for 5-30 s (connections reset, new ones refused): producers fall back to
  their outbox, consumers lose their group and rejoin;
- network_delay: 20-300 ms added to every forwarded chunk for 5-30 s.

The embedded broker keeps its log in memory: a stopped broker process forgets every record and every
committed offset, and the design cannot promise anything about records it had acknowledged but no
consumer had read yet (a real cluster keeps them: replication 3, min.insync.replicas 2). What the design
does promise, that a producer keeps an event in its outbox until the broker acknowledges it and that
consumers resume when the broker is reachable again, is what broker_outage tests: the broker becomes
unreachable while its process keeps the log.

A role that dies fails the run, except one way the store is meant to stop: with exit status 3 when
ClickHouse cannot read back a part it had committed (a merge running as the disk filled can leave one).
The run restarts it, as a deployment's restart policy would, and counts it; chDB detaches the broken part
at start and brings back the parts it replaced."""

from __future__ import annotations

import itertools
import json
import random
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from deploy.cli import EXIT_CORRUPTED
from deploy.embedded_broker import EmbeddedBroker
from deploy.topics import apply_topics, load_topic_specs
from producers.sdk import AuditProducer
from producers.simulator import SimConfig, Simulation
from schemas.catalog import Catalog
from schemas.codec import AvroCodec
from schemas.registry import CatalogRegistry
from tests.chaos.link import FaultyLink
from tests.conftest import free_port, wait_until
from tests.e2e.processes import RoleProcess, StoreProcess, fill, sql, uninterrupted_alerts

KINDS = ("store_kill", "rules_kill", "supervisor_kill", "clickhouse_outage", "broker_outage", "network_delay")
EVENT_TIME_ONLY = {"COLLECTION_AUDIT_RULES_IDLE_TICK_S": "1000000"}  # as the uninterrupted judge: no wall clock


class ChaosFailure(RuntimeError):
    pass


@dataclass
class ChaosConfig:
    workdir: Path
    faults_per_kind: int = 20
    kinds: tuple[str, ...] = KINDS
    rate: float = 60.0  # events per second, steady, for the whole run
    outage_s: tuple[float, float] = (5.0, 30.0)
    seed: int = 1
    debtors: int = 1_000
    logs_dir: Path | None = None  # every role's stderr is written here at the end
    log: Callable[[str], None] = print


@dataclass
class FaultRecord:
    kind: str
    started_s: float  # since the load started
    lasted_s: float
    detail: str


@dataclass
class Outcome:
    faults: list[FaultRecord] = field(default_factory=list)
    produced: int = 0
    stored: int = 0
    stored_final: int = 0
    duplicated: int = 0
    lost: int = 0
    unexpected: int = 0  # stored ids nobody produced
    alerts_expected: int = 0
    alerts_stored: int = 0
    alerts_stored_final: int = 0
    alerts_duplicated: int = 0
    alerts_missing: dict[str, int] = field(default_factory=dict)  # by rule
    alerts_extra: dict[str, int] = field(default_factory=dict)
    store_restarts: int = 0  # the store stopped itself on a corrupted part and was restarted
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return (self.stored == self.stored_final == self.produced and not self.lost and not self.duplicated
                and not self.unexpected and not self.alerts_missing and not self.alerts_extra
                and not self.alerts_duplicated and self.alerts_stored_final == self.alerts_expected)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "clean": self.clean,
                "faults_by_kind": dict(Counter(f.kind for f in self.faults))}


class ChaosRun:
    def __init__(self, config: ChaosConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        work = config.workdir
        self.disk = work / "disk"
        self.clickhouse_url = f"chdb://{self.disk / 'clickhouse'}"
        self.link = FaultyLink(free_port(), free_port())
        self.broker = EmbeddedBroker(self.link.upstream_port, work / "broker.log",
                                     advertised_port=self.link.listen_port)
        self.codec = AvroCodec(CatalogRegistry(Catalog.load()))
        # simulated time runs ahead of the wall clock: start far enough back that a long run's events
        # stay in the past (the SDK refuses events more than a day in the future)
        start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=400)
        simulation = Simulation(SimConfig(seed=config.seed, start=start, debtors=config.debtors, violation_rate=0.03))
        self.events = (item.event for item in simulation.events())
        self.ledger: list[dict[str, Any]] = []
        self.store: RoleProcess | None = None
        self.rules: RoleProcess | None = None
        self.retired: list[RoleProcess] = []
        self.producer: AuditProducer | None = None
        self._stop_load = threading.Event()
        self._load_error: BaseException | None = None
        self._load: threading.Thread | None = None
        self._started = 0.0
        self._mounted = False
        self.store_restarts = 0

    # -- the stack ----------------------------------------------------------------------------

    def run(self) -> Outcome:
        began = time.monotonic()
        try:
            self._start()
            outcome = Outcome()
            schedule = [kind for kind in self.config.kinds for _ in range(self.config.faults_per_kind)]
            self.rng.shuffle(schedule)
            for number, kind in enumerate(schedule, 1):
                time.sleep(self.rng.uniform(1.0, 4.0))
                self._check_load()
                self._check_alive()
                started = time.monotonic() - self._started
                moment = time.monotonic()
                detail = getattr(self, f"_{kind}")()
                outcome.faults.append(FaultRecord(kind, round(started, 1), round(time.monotonic() - moment, 1), detail))
                self.config.log(f"fault {number}/{len(schedule)} {kind}: {detail} "
                                f"({len(self.ledger)} events produced so far)")
            self._finish(outcome)
            outcome.seconds = round(time.monotonic() - began, 1)
            return outcome
        finally:
            self._teardown()

    def _start(self) -> None:
        self.disk.mkdir(parents=True, exist_ok=True)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1g", "tmpfs", str(self.disk)],
                                 capture_output=True, text=True)
        if mounted.returncode:
            raise ChaosFailure("the ClickHouse outage needs a tmpfs of its own to fill (run as root, as CI does): "
                               + mounted.stderr.strip())
        self._mounted = True
        self.link.start()
        self.broker.start()
        apply_topics({"bootstrap_servers": self.broker.bootstrap_servers}, load_topic_specs(), single_node=True)
        self.producer = AuditProducer({"bootstrap_servers": self.broker.bootstrap_servers},
                                      CatalogRegistry(Catalog.load()), self.config.workdir / "outbox.sqlite",
                                      delivery_timeout_s=3)
        self._produce(2_000)  # licences and certifications on file before anything is judged
        self.store, self.rules = self._start_store(), self._start_rules()
        self._load = threading.Thread(target=self._steady_load, name="chaos-load", daemon=True)
        self._started = time.monotonic()
        self._load.start()

    def _teardown(self) -> None:
        self._stop_load.set()
        if self._load is not None:
            self._load.join(30)
        roles = [role for role in (*self.retired, self.store, self.rules) if role is not None]
        for role in roles:
            if role.process.poll() is None:
                role.process.kill()
                role.process.wait(10)
        if self.config.logs_dir is not None:
            self.config.logs_dir.mkdir(parents=True, exist_ok=True)
            for stale in self.config.logs_dir.glob("*.log"):  # a previous run's, which would mislead
                stale.unlink()
            broker_log = self.config.workdir / "broker.log"
            if broker_log.exists():
                shutil.copyfile(broker_log, self.config.logs_dir / "broker.log")
            for number, role in enumerate(roles, 1):
                name = f"{number:03d}-{role.process.args[3]}.log"
                (self.config.logs_dir / name).write_text("".join(role.log), encoding="utf-8")
        if self.producer is not None:
            self.producer.close(timeout_s=0)
        self.broker.stop()
        self.link.stop()
        if self._mounted:
            subprocess.run(["umount", "-l", str(self.disk)], check=False)

    def _start_store(self) -> RoleProcess:
        store = StoreProcess(self.broker, self.clickhouse_url, self.config.workdir / "store")
        self._wait_ready(store, lag_series={"collection_audit_consumer_lag": 18})
        return store

    def _start_rules(self) -> RoleProcess:
        rules = RoleProcess("rules", self.broker, **EVENT_TIME_ONLY)
        self._wait_ready(rules, lag_series={"collection_audit_rules_lag": 6})
        return rules

    def _states(self) -> str:
        """What each running role says about itself, for a failure message."""
        lines = []
        for name, role in (("store", self.store), ("rules", self.rules)):
            if role is None:
                continue
            exited = role.process.poll()
            lag = role.samples("collection_audit_consumer_lag" if name == "store" else "collection_audit_rules_lag")
            lines.append(f"--- {name}: {'running' if exited is None else f'EXITED with {exited}'}; lags {lag}")
            lines.extend(text for line in role.log[-80:] if (text := line.strip(" │╭╰─\n")))
        return "\n".join(lines)

    def _check_alive(self) -> None:
        if self.store is not None and self.store.process.poll() == EXIT_CORRUPTED:
            self.config.log("the store stopped on a corrupted part; restarting it\n" + "".join(self.store.log[-5:]))
            self.retired.append(self.store)
            self.store_restarts += 1
            self.store = self._start_store()
        if any(role is not None and role.process.poll() is not None for role in (self.store, self.rules)):
            raise ChaosFailure("a role died\n" + self._states())

    def _wait_ready(self, role: RoleProcess, lag_series: dict[str, int], timeout_s: float = 120) -> None:
        """Running once it reports a lag for every partition it must own (it joined its groups)."""
        def ready() -> bool:
            return all(len(role.samples(name) or []) == n for name, n in lag_series.items())

        if not wait_until(ready, timeout_s=timeout_s, every_s=0.5):
            logged = [line for line in role.log if line[:2] == "20"]  # timestamped: not the live view
            raise ChaosFailure(f"{' '.join(role.process.args[3:5])} did not join its group within {timeout_s:.0f}s:\n"
                               + "".join(logged[-40:]))

    # -- load and ledger ----------------------------------------------------------------------

    def _produce(self, n: int) -> None:
        assert self.producer is not None
        batch = list(itertools.islice(self.events, n))
        ids = self.producer.emit_many(batch)  # returns once each event is acked or in the outbox
        assert ids == [e["event_id"] for e in batch]
        self.ledger.extend(batch)

    def _steady_load(self) -> None:
        tick = 0.25
        owed = 0.0
        try:
            while not self._stop_load.is_set():
                began = time.monotonic()
                owed += self.config.rate * tick
                if owed >= 1:
                    self._produce(int(owed))
                    owed -= int(owed)
                self._stop_load.wait(max(0.0, tick - (time.monotonic() - began)))
        except BaseException as exc:
            self._load_error = exc

    def _check_load(self) -> None:
        if self._load_error is not None:
            raise ChaosFailure(f"the producer load failed: {self._load_error!r}")

    # -- faults (each returns what it did) ------------------------------------------------------

    def _store_kill(self) -> str:
        assert self.store is not None
        self.store.kill()
        self.retired.append(self.store)
        self.store = self._start_store()
        return "SIGKILL, restarted"

    def _rules_kill(self) -> str:
        assert self.rules is not None
        self.rules.kill()
        self.retired.append(self.rules)
        self.rules = self._start_rules()
        return "SIGKILL, restarted"

    def _supervisor_kill(self) -> str:
        assert self.store is not None and self.rules is not None
        for role in (self.rules, self.store):
            role.stop()
            self.retired.append(role)
        supervisor = RoleProcess("up", self.broker, "--data-dir", str(self.config.workdir / "up"),
                                 CLICKHOUSE_URL=self.clickhouse_url, COLLECTION_AUDIT_PII_KEY="ab" * 32,
                                 COLLECTION_AUDIT_STORE_BATCH_ROWS="400", COLLECTION_AUDIT_STORE_BATCH_WAIT_MS="100",
                                 **EVENT_TIME_ONLY)
        self.retired.append(supervisor)
        self._wait_ready(supervisor, {"collection_audit_consumer_lag": 18, "collection_audit_rules_lag": 6})
        held = self.rng.uniform(0.5, 5.0)
        time.sleep(held)
        supervisor.kill()
        self.store, self.rules = self._start_store(), self._start_rules()
        return f"roles handed to `up`, SIGKILL after {held:.1f}s of work, roles restarted"

    def _clickhouse_outage(self) -> str:
        assert self.store is not None
        began = time.monotonic()
        ballast = fill(self.disk)
        held = self.rng.uniform(*self.config.outage_s)
        failed = self.store.wait_for_line("flush failed", timeout_s=held)
        time.sleep(max(0.0, held - (time.monotonic() - began)))
        ballast.unlink()
        self._check_alive()
        if self.store.process.poll() is not None:
            raise ChaosFailure("the store consumer died during a ClickHouse outage:\n" + "".join(self.store.log[-40:]))
        return f"disk full for {held:.1f}s ({'inserts failed' if failed else 'no insert attempted'})"

    def _broker_outage(self) -> str:
        held = self.rng.uniform(*self.config.outage_s)
        self.link.sever()
        time.sleep(held)
        self.link.restore()
        time.sleep(1.0)
        self._check_alive()
        return f"broker unreachable for {held:.1f}s"

    def _network_delay(self) -> str:
        held = self.rng.uniform(*self.config.outage_s)
        self.link.delay_s = delay = self.rng.uniform(0.02, 0.3)
        time.sleep(held)
        self.link.restore()
        return f"{delay * 1000:.0f} ms per chunk for {held:.1f}s"

    # -- reconciliation -----------------------------------------------------------------------

    def _finish(self, outcome: Outcome) -> None:
        self._stop_load.set()
        assert self._load is not None and self.producer is not None
        self._load.join(60)
        self._check_load()
        left = self.producer.flush(120)
        if left:
            raise ChaosFailure(f"{left} events still in the outbox two minutes after the last fault")
        self.config.log(f"load stopped at {len(self.ledger)} events; waiting for the consumers to catch up")
        assert self.store is not None and self.rules is not None
        steady = 0

        def caught_up() -> bool:
            nonlocal steady
            assert self.store is not None and self.rules is not None
            self._check_alive()
            store_lags, rule_lags = self.store.samples("collection_audit_consumer_lag"), \
                self.rules.samples("collection_audit_rules_lag")
            done = (store_lags is not None and len(store_lags) == 18 and not any(store_lags)
                    and rule_lags is not None and len(rule_lags) == 6 and not any(rule_lags))
            steady = steady + 1 if done else 0
            return steady >= 4  # the alerts of the last batch reached the store too

        if not wait_until(caught_up, timeout_s=600, every_s=1.0):
            raise ChaosFailure("the consumers did not catch up within 10 minutes\n" + self._states())
        self.rules.stop()
        self.store.stop()
        outcome.store_restarts = self.store_restarts
        self._reconcile(outcome)

    def _reconcile(self, outcome: Outcome) -> None:
        produced = {e["event_id"] for e in self.ledger}
        outcome.produced = len(produced)
        [totals] = sql(self.clickhouse_url, """
            SELECT (SELECT count() FROM audit.actions) + (SELECT count() FROM audit.reference_events) AS stored,
                   (SELECT count() FROM audit.actions FINAL)
                 + (SELECT count() FROM audit.reference_events FINAL) AS final""")
        outcome.stored, outcome.stored_final = int(totals["stored"]), int(totals["final"])
        copies = {row["id"]: int(row["n"]) for row in sql(self.clickhouse_url, """
            SELECT id, count() AS n FROM (SELECT toString(event_id) AS id FROM audit.actions
                                          UNION ALL SELECT toString(event_id) FROM audit.reference_events)
            GROUP BY id""")}
        outcome.lost = len(produced - copies.keys())
        outcome.unexpected = len(copies.keys() - produced)
        outcome.duplicated = sum(n - 1 for n in copies.values())

        expected = uninterrupted_alerts(self.ledger, self.codec)
        outcome.alerts_expected = len(expected)
        [alert_totals] = sql(self.clickhouse_url, "SELECT (SELECT count() FROM audit.alerts) AS stored, "
                                                  "(SELECT count() FROM audit.alerts FINAL) AS final")
        outcome.alerts_stored, outcome.alerts_stored_final = int(alert_totals["stored"]), int(alert_totals["final"])
        stored = {row["alert_id"]: (row["rule_id"], int(row["n"])) for row in sql(
            self.clickhouse_url, "SELECT alert_id, any(rule_id) AS rule_id, count() AS n FROM audit.alerts "
                                 "GROUP BY alert_id")}
        outcome.alerts_duplicated = sum(n - 1 for _, n in stored.values())
        outcome.alerts_missing = dict(Counter(rule for a, rule in expected.items() if a not in stored))
        outcome.alerts_extra = dict(Counter(rule for a, (rule, _) in stored.items() if a not in expected))


def write_json(outcome: Outcome, path: Path) -> None:
    path.write_text(json.dumps(outcome.to_json(), indent=2) + "\n")
