"""The rule engine's cost in instructions per event, counted by valgrind's callgrind: unlike events/s
on a shared virtual machine, whose speed drifts by a factor of two between days, the count repeats
to within a fraction of a percent, so a change can be judged by one run before and one after.

The engine runs over the same decoded simulated events as the `rules` section, in a child process
under callgrind, once judging `n` events and once judging none: the difference, divided by `n`, is
what judging costs (start-up, imports and loading the catalog cancel out); string hashing is seeded
alike in both, so dicts and sets do the same work in every run. The functions that take
the most of that difference are listed, which is where the engine's time goes, C and Python alike.
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


def _counted(stream_path: Path, count: int, out: Path) -> tuple[int, dict[str, int]]:
    """(instructions of the whole child, per function) for a child judging `count` events."""
    run = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m",
                          "tests.bench.instructions_bench", str(stream_path), str(count)],
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

    stream = [(is_action, record) for is_action, record, _ in decoded_simulation(n_events, seed=7,
                                                                                  violation_rate=0.02)]
    with tempfile.TemporaryDirectory() as tmp:
        stream_path = Path(tmp) / "stream.pickle"
        stream_path.write_bytes(pickle.dumps(stream))
        console.print(f"instructions: the engine under callgrind, judging none then {n_events:,} events "
                      "(about 15 s per 1,000 events)...")
        base, base_functions = _counted(stream_path, 0, Path(tmp) / "none.out")
        total, functions = _counted(stream_path, n_events, Path(tmp) / "all.out")
    per_event = (total - base) / n_events
    spent = sorted(((cost - base_functions.get(name, 0), name) for name, cost in functions.items()), reverse=True)
    console.print(f"where the engine's {per_event:,.0f} instructions per event go (callgrind, by function):")
    for cost, name in spent[:12]:
        console.print(f"  {cost / n_events:>9,.0f}  {cost / (total - base):5.1%}  {name}")
    return {"engine_instructions_per_event": per_event}


LABELS = {"engine_instructions_per_event": "rule engine alone: instructions per event (callgrind)"}


if __name__ == "__main__":
    judge(sys.argv[1], int(sys.argv[2]))
