"""`python -m services.llm.simulator [--host H] [--port P] [--api-key K]`

The key comes from --api-key, else MAKOTO_SIMULATOR_API_KEY, else the local secret store
(local://llm-simulator-key under MAKOTO_HOME, created on first use). Prefer the latter two:
a key on the command line is visible in the process list.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys

from services.common.config import MeshSettings
from services.llm.simulator.app import bound_port, start_simulator
from services.llm.simulator.keys import ensure_simulator_key


def _parse(settings: MeshSettings) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m services.llm.simulator", description=__doc__)
    parser.add_argument("--host", default=settings.host)
    parser.add_argument("--port", type=int, default=settings.simulator_port)
    parser.add_argument("--api-key", default=None, help="API key clients must present")
    parser.add_argument("--retry-after", type=int, default=1, help="Retry-After of sim-ratelimit (s)")
    return parser.parse_args()


async def _serve(args: argparse.Namespace, api_key: str) -> None:
    runner = await start_simulator(args.host, args.port, api_key, retry_after_seconds=args.retry_after)
    print(
        f'{{"msg": "serving", "service": "llm-simulator", "address": "{args.host}:{bound_port(runner)}"}}',
        file=sys.stderr,
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    settings = MeshSettings()
    args = _parse(settings)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    api_key = args.api_key or os.environ.get("MAKOTO_SIMULATOR_API_KEY")
    if not api_key:
        api_key = ensure_simulator_key(settings).get_secret_value()
    asyncio.run(_serve(args, api_key))


if __name__ == "__main__":
    main()
