"""Two store consumer instances in one process (embedded chDB opens a data directory in one process
only), each a member of the `audit-store` group with its own metrics on its own port:

    python -m tests.e2e.store_pair PORT_1 PORT_2

Settings come from the environment, as for `collection-audit store`. SIGUSR1 makes the second
instance leave the group; SIGTERM stops both and exits."""

from __future__ import annotations

import signal
import sys
import threading

from prometheus_client import CollectorRegistry, start_http_server

from consumers.store_consumer import run_store
from deploy.clickhouse_client import connect
from deploy.settings import load_settings


def main() -> None:
    ports = sys.argv[1:]
    settings = load_settings()
    stops = [threading.Event() for _ in ports]
    threads = []
    for number, (port, stop) in enumerate(zip(ports, stops, strict=True), 1):
        registry = CollectorRegistry()
        start_http_server(int(port), addr="127.0.0.1", registry=registry)
        thread = threading.Thread(target=run_store, name=f"store-{number}",
                                  args=(settings, registry, stop.is_set, connect(settings.clickhouse)))
        thread.start()
        threads.append(thread)
    signal.signal(signal.SIGUSR1, lambda *_: stops[-1].set())
    signal.signal(signal.SIGTERM, lambda *_: [stop.set() for stop in stops])
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
