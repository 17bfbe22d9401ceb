"""The cost in instructions per event of the rule engine and of the store's own work on a record,
counted by valgrind's callgrind: unlike events/s on a shared virtual machine, whose speed drifts by a
factor of two between days, the count repeats to within a fraction of a percent, so a change can be
judged by one run before and one after.

Each runs in a child process under callgrind, once over `n` events and once over none: the
difference, divided by `n`, is what the events cost (start-up, imports and loading the catalog cancel
out); string hashing is seeded alike in both, so dicts and sets do the same work in every run. The
functions that take the most of that difference are listed, C and Python alike.

- engine: the rule engine judging the decoded simulated events of the `rules` section;
- store: what a store consumer does to each record of the `store` section between Kafka and
  ClickHouse, in batches of 10,000 as it takes them -- decode with the writer's schema, validate, enrich
  (reference state, local time, PII, normalised text) into columns, content hash and chain link.
  Kafka's record unpacking and the insert are left out: they are their own ceilings in the `store`
  section, and their threads would make the count vary.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console

_COLLECTED = re.compile(r"Collected : (\d+)")
_ANNOTATED = re.compile(r"^\s*([\d,]+) \([ \d.]+%\)\s+(\S+?):(\S+)")


def judge(stream_path: str, count: int) -> None:
    """Child process: the engine over the first `count` events of a pickled stream."""
    from consumers.consumer_loop import tune_gc
    from consumers.rule_consumer import build_engine
    from deploy.settings import Settings

    stream = pickle.loads(Path(stream_path).read_bytes())
    engine = build_engine(Settings())
    engine.watermark_from_events = True
    tune_gc()
    for is_action, record in stream[:count]:
        engine.on_action(record) if is_action else engine.on_reference(record)


def store(values_path: str, count: int) -> None:
    """Child process: the store's work on the first `count` records of pickled (topic, key, value)s, in
    batches of 10,000 as the store takes them: decode, validate, enrich into columns, hash and link."""
    from datetime import UTC, datetime

    from consumers.consumer_loop import tune_gc
    from consumers.hash_chain import GENESIS, hashed_columns, link, values_hash
    from consumers.pii import PiiMasker
    from consumers.reference_state import ReferenceState
    from consumers.store_consumer import store_codec
    from consumers.store_rows import Enricher, Provenance
    from consumers.trail_writer import ACTIONS, REFERENCE_EVENTS, columns_of
    from schemas import TOPIC_ACTIONS, TOPIC_REFERENCE, value_subject
    from schemas.catalog import Catalog
    from schemas.contract import record_problems, to_micros
    from schemas.registry import CatalogRegistry

    values = pickle.loads(Path(values_path).read_bytes())
    codec = store_codec(CatalogRegistry(Catalog.load()))
    enricher = Enricher(PiiMasker(bytes(32)), ReferenceState(in_micros=True))
    ingested_at, heads = datetime(2026, 1, 1, tzinfo=UTC), {}
    tune_gc()
    for start in range(0, count, 10_000):
        actions, references = [], []
        for offset, (topic, key, value) in enumerate(values[start:min(count, start + 10_000)], start):
            decoded = codec.decode(value_subject(topic), value)
            if record_problems(topic, decoded.record):
                raise RuntimeError(f"simulated record {offset} is invalid")
            if topic == TOPIC_REFERENCE:
                enricher.state.apply(decoded.record)
                references.append(enricher.reference_row(decoded.record, key.decode(),
                                                         Provenance(topic, 0, offset, decoded.schema_id, ingested_at)))
            else:
                actions.append((decoded.record, offset, decoded.schema_id))
        batches = [(REFERENCE_EVENTS, columns_of(references, REFERENCE_EVENTS.columns))]
        if actions:
            records, offsets, schema_ids = zip(*actions, strict=True)
            batches.append((ACTIONS, enricher.action_columns(records, TOPIC_ACTIONS, [0] * len(records), offsets,
                                                            schema_ids, to_micros(ingested_at))))
        for table, columns in batches:
            hashed = hashed_columns(table.columns)
            rows = zip(*[columns[c] for c in hashed], strict=True)
            for chain, row in zip(columns[table.key_column], rows, strict=True):
                heads[chain] = link(heads.get(chain, GENESIS), values_hash(row))


def _counted(part: str, data_path: Path, count: int, out: Path) -> tuple[int, dict[str, int]]:
    """(instructions of the whole child, per function) for a child running `part` over `count` events."""
    run = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m",
                          "tests.bench.instructions_bench", part, str(data_path), str(count)],
                         capture_output=True, text=True, check=False, env={**os.environ, "PYTHONHASHSEED": "0"})
    found = _COLLECTED.search(run.stderr)
    if run.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind run failed (exit {run.returncode}):\n{run.stderr[-2000:]}")
    annotated = subprocess.run(["callgrind_annotate", "--threshold=100", str(out)], capture_output=True, text=True,
                               check=True).stdout
    functions: dict[str, int] = {}
    for line in annotated.splitlines():
        if match := _ANNOTATED.match(line):
            name = f"{Path(match.group(2)).name}:{match.group(3)}"
            functions[name] = functions.get(name, 0) + int(match.group(1).replace(",", ""))
    return int(found.group(1)), functions


def run(console: Console, n_events: int) -> dict[str, float]:
    if shutil.which("valgrind") is None or shutil.which("callgrind_annotate") is None:
        raise SystemExit("the instructions section needs valgrind (Debian: apt-get install valgrind)")
    from consumers.rules.simulator_check import decoded_simulation
    from schemas.catalog import Catalog
    from schemas.codec import AvroCodec
    from schemas.registry import CatalogRegistry
    from tests.bench.store_bench import encoded_events

    inputs = {
        "engine": [(is_action, record) for is_action, record, _ in decoded_simulation(n_events, seed=7,
                                                                                       violation_rate=0.02)],
        "store": encoded_events(n_events, AvroCodec(CatalogRegistry(Catalog.load()))),
    }
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for part, data in inputs.items():
            data_path = Path(tmp) / f"{part}.pickle"
            data_path.write_bytes(pickle.dumps(data))
            console.print(f"instructions: the {part} under callgrind, over none then {n_events:,} events "
                          "(about 15 s per 1,000 events)...")
            base, base_functions = _counted(part, data_path, 0, Path(tmp) / f"{part}-none.out")
            total, functions = _counted(part, data_path, n_events, Path(tmp) / f"{part}-all.out")
            per_event = (total - base) / n_events
            spent = sorted(((cost - base_functions.get(name, 0), name) for name, cost in functions.items()),
                           reverse=True)
            console.print(f"where the {part}'s {per_event:,.0f} instructions per event go (callgrind, by function):")
            for cost, name in spent[:12]:
                console.print(f"  {cost / n_events:>9,.0f}  {cost / (total - base):5.1%}  {name}")
            results[f"{part}_instructions_per_event"] = per_event
    return results


LABELS = {"engine_instructions_per_event": "rule engine alone: instructions per event (callgrind)",
          "store_instructions_per_event": "store, a record from Kafka to its row: decode, validate, enrich, "
                                          "hash (callgrind)"}


if __name__ == "__main__":
    {"engine": judge, "store": store}[sys.argv[1]](sys.argv[2], int(sys.argv[3]))
