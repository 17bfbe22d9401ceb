"""Coverage-guided fuzzing with atheris (libFuzzer): `python -m tests.fuzz TARGET [SECONDS]`, or
`python -m tests.fuzz seed` to (re)write the seed inputs. `make fuzz` runs every target for
FUZZ_SECONDS (default 600) each.

Inputs that reach new code are kept in .fuzz/corpus/TARGET (not committed); at the end they are
merged into tests/fuzz/corpus/TARGET (only those that add coverage): that corpus is
committed and replayed by `make test` (tests/fuzz/test_corpora.py). A crash is written to
tests/fuzz/crashes/TARGET/ and stops the run: fix the code and commit the reproducer with the fix.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).parent
WORK = Path(".fuzz")


def seed() -> None:
    """Valid inputs of every kind, so the fuzzer starts from the inside of each parser."""
    import hashlib
    import json

    from producers.simulator import SimConfig, Simulation
    from schemas.contract import parse_event, record_to_json
    from tests.fuzz.targets import CODEC, TOPICS

    inputs: dict[str, list[bytes]] = {"store_record": [], "jsonl_line": [], "ingest_body": []}
    per_shape: dict[str, int] = {}
    for _, item in zip(range(5_000), Simulation(SimConfig(seed=5, violation_rate=0.2)).events(), strict=False):
        shape = str(item.event.get("kind") or item.event.get("action_type"))
        per_shape[shape] = per_shape.get(shape, 0) + 1
        if per_shape[shape] > 3:  # a few of each kind of event is enough to start from
            continue
        event = parse_event(item.event)
        line = json.dumps(record_to_json(event.record), ensure_ascii=False).encode()
        inputs["store_record"].append(bytes([TOPICS.index(event.topic)]) + CODEC.encode(event.subject, event.record))
        inputs["jsonl_line"].append(line)
        inputs["ingest_body"].append(b"[" + line + b"]")
    for target, found in inputs.items():
        directory = HERE / "corpus" / target
        directory.mkdir(parents=True, exist_ok=True)
        for data in found:
            (directory / f"seed-{hashlib.sha1(data).hexdigest()[:16]}").write_bytes(data)
        print(f"{target}: {len(found)} seeds in {directory}")


def _instrumented(target: str) -> Callable[[bytes], None]:
    """The target, with the code under test instrumented for coverage (imported here, not before)."""
    import atheris

    with atheris.instrument_imports(include=["schemas", "producers", "consumers", "tests.fuzz"]):
        from tests.fuzz.targets import TARGETS
    return TARGETS[target]


def fuzz(target: str, seconds: int) -> None:
    import atheris

    check = _instrumented(target)
    work, committed = WORK / "corpus" / target, HERE / "corpus" / target
    crashes = HERE / "crashes" / target
    for directory in (work, committed, crashes):
        directory.mkdir(parents=True, exist_ok=True)
    for seed_file in committed.iterdir():
        shutil.copy(seed_file, work / seed_file.name)
    args = [sys.argv[0], f"-max_total_time={seconds}", "-timeout=10", "-rss_limit_mb=4096", "-max_len=65536",
            f"-artifact_prefix={crashes}/", "-print_final_stats=1", str(work)]
    atheris.Setup(args, check)
    atheris.Fuzz()  # returns only through sys.exit (libFuzzer)


def merge(target: str) -> None:
    """Add to the committed corpus the inputs of this run that reach new coverage (libFuzzer -merge=1
    keeps what is there and adds only what brings new features)."""
    committed, work = HERE / "corpus" / target, WORK / "corpus" / target
    before = len(list(committed.iterdir()))
    # libFuzzer runs the merge in child processes started from argv[0]: give it an executable
    wrapper = WORK / f"libfuzzer-{target}"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m tests.fuzz _libfuzzer {target} "$@"\n')
    wrapper.chmod(0o755)
    subprocess.run([str(wrapper), "-merge=1", str(committed), str(work)], check=True)
    print(f"{target}: {len(list(committed.iterdir())) - before} inputs added, {before} kept")


def _libfuzzer(target: str, args: list[str]) -> None:
    import atheris

    check = _instrumented(target)
    atheris.Setup([str((WORK / f"libfuzzer-{target}").resolve()), *args], check)
    atheris.Fuzz()


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "seed":
        seed()
    elif command == "_libfuzzer":
        _libfuzzer(sys.argv[2], sys.argv[3:])
    elif command == "merge":
        merge(sys.argv[2])
    elif command in ("store_record", "jsonl_line", "ingest_body"):
        fuzz(command, int(sys.argv[2]) if len(sys.argv) > 2 else 600)
    else:
        sys.exit("usage: python -m tests.fuzz seed | TARGET [SECONDS] | merge TARGET "
                 "(targets: store_record, jsonl_line, ingest_body)")
