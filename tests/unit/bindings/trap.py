"""A listening socket that records who connects: proof that a refused endpoint was never contacted."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass
class Trap:
    """A TCP listener on loopback (IPv4 and, where available, IPv6) that counts connections."""

    port: int
    connections: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def listening() -> AsyncIterator[Trap]:
    trap = Trap(0)

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        trap.connections.append(str(writer.get_extra_info("peername")))
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    trap.port = server.sockets[0].getsockname()[1]
    servers = [server]
    with contextlib.suppress(OSError):  # no IPv6 loopback on this machine: IPv4 only
        servers.append(await asyncio.start_server(on_connect, "::1", trap.port))
    try:
        yield trap
    finally:
        for s in servers:
            s.close()
            await s.wait_closed()
