"""`python -m tests.chaos [--faults-per-kind N] [--kinds a,b] [--rate R] [--seed S] [--json PATH]`:
the chaos run on the embedded stack (`make chaos`), its table on stdout, exit 1 unless it reconciles."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tests.chaos.run import KINDS, ChaosConfig, ChaosFailure, ChaosRun, Outcome, write_json


def report(outcome: Outcome, console: Console) -> None:
    faults = Table(title="faults injected")
    for column in ("kind", "count", "total s", "longest s"):
        faults.add_column(column, justify="left" if column == "kind" else "right")
    lasted: dict[str, list[float]] = defaultdict(list)
    for fault in outcome.faults:
        lasted[fault.kind].append(fault.lasted_s)
    for kind in KINDS:
        if kind in lasted:
            faults.add_row(kind, str(len(lasted[kind])), f"{sum(lasted[kind]):.0f}", f"{max(lasted[kind]):.1f}")
    console.print(faults)

    events = Table(title=f"reconciliation ({outcome.seconds:.0f} s)")
    events.add_column("")
    for column in ("produced / expected", "stored", "stored FINAL", "duplicated", "lost / missing", "extra"):
        events.add_column(column, justify="right")
    events.add_row("events", str(outcome.produced), str(outcome.stored), str(outcome.stored_final),
                   str(outcome.duplicated), str(outcome.lost), str(outcome.unexpected))
    events.add_row("alerts", str(outcome.alerts_expected), str(outcome.alerts_stored),
                   str(outcome.alerts_stored_final), str(outcome.alerts_duplicated),
                   str(sum(outcome.alerts_missing.values())), str(sum(outcome.alerts_extra.values())))
    console.print(events)
    if outcome.store_restarts:
        console.print(f"the store stopped itself on a part ClickHouse could not read back "
                      f"{outcome.store_restarts} time(s) and was restarted")
    if outcome.alerts_missing or outcome.alerts_extra:
        console.print(f"missing by rule {outcome.alerts_missing}; extra by rule {outcome.alerts_extra}")
    console.print("[green]reconciled: nothing lost, nothing twice[/]" if outcome.clean else "[red]NOT reconciled[/]")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--faults-per-kind", type=int, default=20)
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated fault kinds")
    parser.add_argument("--rate", type=float, default=60.0, help="producer load, events per second")
    parser.add_argument("--outage", default="5,30", help="outage length range in seconds, MIN,MAX")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=Path("chaos-results.json"))
    parser.add_argument("--logs", type=Path, default=Path("chaos-logs"), help="where each role's log is written")
    args = parser.parse_args()
    kinds = tuple(k for k in args.kinds.split(",") if k)
    if unknown := set(kinds) - set(KINDS):
        parser.error(f"unknown fault kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    low, high = (float(x) for x in args.outage.split(","))
    console = Console(stderr=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the run's teardown stops what it started
    with tempfile.TemporaryDirectory(prefix="chaos-") as workdir:
        config = ChaosConfig(Path(workdir), faults_per_kind=args.faults_per_kind, kinds=kinds, rate=args.rate,
                             outage_s=(low, high), seed=args.seed, logs_dir=args.logs,
                             log=lambda line: console.print(line, markup=False))
        try:
            outcome = ChaosRun(config).run()
        except ChaosFailure as exc:
            console.print(f"[red]chaos run aborted:[/] {exc}", markup=True)
            return 1
    report(outcome, Console())
    write_json(outcome, args.json)
    console.print(f"figures written to {args.json}")
    return 0 if outcome.clean else 1


if __name__ == "__main__":
    sys.exit(main())
