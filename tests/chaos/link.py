"""A faulty network link between every Kafka client and the broker: a TCP relay the broker advertises
as its address, so producers and consumers reach it only through here. The controller can delay each
forwarded chunk (latency on loopback, where `tc netem` is not available) or cut the link (every open
connection reset, new ones refused) while the broker process and the data it holds stay untouched."""

from __future__ import annotations

import asyncio
import contextlib
import threading


class FaultyLink:
    def __init__(self, listen_port: int, upstream_port: int, host: str = "127.0.0.1") -> None:
        self.host, self.listen_port, self.upstream_port = host, listen_port, upstream_port
        self.delay_s = 0.0
        self.cut = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="faulty-link", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"the relay could not listen on {self.host}:{self.listen_port}")

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def sever(self) -> None:
        """Cut the link: reset every open connection and refuse new ones until `restore()`."""
        self.cut = True
        self._loop.call_soon_threadsafe(self._close_all)

    def restore(self) -> None:
        self.cut = False
        self.delay_s = 0.0

    def _close_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._accept, self.host, self.listen_port))
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            self._close_all()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self.cut:
            client_writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(self.host, self.upstream_port)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers.update((client_writer, upstream_writer))
        await asyncio.gather(self._pump(client_reader, upstream_writer), self._pump(upstream_reader, client_writer))
        for writer in (client_writer, upstream_writer):
            self._writers.discard(writer)
            writer.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Forward one direction in order; each chunk waits the current delay first."""
        with contextlib.suppress(OSError, ConnectionError):
            while chunk := await reader.read(1 << 16):
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                if self.cut:
                    break
                writer.write(chunk)
                await writer.drain()
        writer.transport.abort()  # one side closed: the whole connection goes, as on a real link
