"""Talking to Envoy's admin interface, which listens only on a Unix socket (mode 0600) under the
mesh home (services/mesh/envoy_config.py `admin`): readiness checks, tests, operators."""

from __future__ import annotations

import httpx

from services.common.config import MeshSettings


def admin_client(settings: MeshSettings, timeout: float = 2.0) -> httpx.AsyncClient:
    """An HTTP client to the admin socket; paths are relative (e.g. "/clusters")."""
    transport = httpx.AsyncHTTPTransport(uds=str(settings.admin_socket_path))
    return httpx.AsyncClient(transport=transport, base_url="http://envoy-admin", timeout=timeout)


async def admin_get(settings: MeshSettings, path: str, wait: float = 2.0) -> httpx.Response:
    async with admin_client(settings, wait) as client:
        return await client.get(path)
