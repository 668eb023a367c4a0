"""A TCP fault proxy for drills: put it between a service and one backend, then break the link.

Modes:
- PASS:      bytes flow both ways.
- REFUSE:    the listening socket is closed: connects fail with ECONNREFUSED; open
             connections are reset.
- BLACKHOLE: connections are accepted and whatever is sent is swallowed; nothing ever comes
             back (a dead host behind a firewall that drops packets, a hung backend).
- SLOW:      every chunk is forwarded `delay` seconds late, both ways.

Changing the mode resets the connections that are open (a black-holed connection has lost
bytes: it cannot be healed), as a real network fault would have done to them.
Loopback only; one port for its lifetime (re-listening after REFUSE uses the same port).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import AsyncIterator


class Mode(enum.Enum):
    PASS = "pass"
    REFUSE = "refuse"
    BLACKHOLE = "blackhole"
    SLOW = "slow"


class FaultProxy:
    def __init__(self, target_host: str, target_port: int, *, delay: float = 2.0) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.delay = delay
        self.mode = Mode.PASS
        self.port = 0
        self.accepted = 0  # connections accepted so far (tests check the backend was reached)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.port

    async def start(self) -> FaultProxy:
        await self._listen()
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def set_mode(self, mode: Mode) -> None:
        previous, self.mode = self.mode, mode
        self._reset_connections()
        if mode is Mode.REFUSE and self._server is not None:
            self._server.close()
            self._server = None
        elif mode is not Mode.REFUSE and previous is Mode.REFUSE:
            await self._listen()

    def _reset_connections(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self._reset_connections()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- plumbing ------------------------------------------------------------------------

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[call-overload]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.add(writer)
        if self.mode is Mode.BLACKHOLE:
            self._spawn(self._swallow(reader, writer))
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.add(up_writer)
        self._spawn(self._pump(reader, up_writer))
        self._spawn(self._pump(up_reader, writer))

    async def _swallow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while await reader.read(65536):
                pass
        writer.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.mode is Mode.BLACKHOLE:
                    continue
                if self.mode is Mode.SLOW:
                    await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.transport.abort()
            self._writers.discard(writer)


@contextlib.asynccontextmanager
async def fault_proxy(host: str, port: int, *, delay: float = 2.0) -> AsyncIterator[FaultProxy]:
    proxy = await FaultProxy(host, port, delay=delay).start()
    try:
        yield proxy
    finally:
        await proxy.stop()
