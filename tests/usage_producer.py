"""A usage producer process for the JetStream drills and the ingest bench:
`python -m tests.usage_producer SOURCE TENANT COUNT` records COUNT events with ids
SOURCE-0 .. SOURCE-(COUNT-1) (value 1 each) through the recorder MAKOTO_USAGE_TRANSPORT selects,
printing `recorded N` as it goes, then waits until its spool is delivered and prints `done`.
Run again with the same arguments it records the same ids again (a retrying client): the
transport must store each once."""

from __future__ import annotations

import asyncio
import sys

from services.common.config import MeshSettings
from services.common.usage import API_CALLS
from services.common.usage_jetstream import usage_recorder

CONCURRENCY = 64


async def produce(source: str, tenant: str, count: int) -> None:
    recorder = usage_recorder(MeshSettings(), source, flush_interval=0.05, batch_size=500)
    await recorder.start()

    async def one(i: int) -> None:
        await recorder.record(meter=API_CALLS, tenant_id=tenant, value=1, event_id=f"{source}-{i}")

    for start in range(0, count, CONCURRENCY):
        await asyncio.gather(*(one(i) for i in range(start, min(count, start + CONCURRENCY))))
        print(f"recorded {min(count, start + CONCURRENCY)}", flush=True)
    ticks = 0
    while left := await recorder.pending():
        ticks += 1
        if ticks % 100 == 0:  # every ~5 s: what a stuck drill shows
            print(f"pending {left}", flush=True)
        await asyncio.sleep(0.05)
    await recorder.close()
    print("done", flush=True)


if __name__ == "__main__":
    asyncio.run(produce(sys.argv[1], sys.argv[2], int(sys.argv[3])))
