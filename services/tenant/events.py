"""ChangeNotifier on NATS: after every committed change TenantService publishes the tenant's new
directory answer on `<prefix>.tenants.<id>.changed` (services/common/tenant_events.py)."""

from __future__ import annotations

import structlog

from services.common.tenant_events import NatsLink, changed_subject
from services.tenant.directory import answer_for
from services.tenant.model import TenantRecord

log = structlog.get_logger("makoto.tenant")


class NatsChangeNotifier:
    def __init__(self, link: NatsLink, prefix: str) -> None:
        self._link = link
        self._prefix = prefix

    async def changed(self, tenant: TenantRecord) -> None:
        payload = answer_for(tenant).SerializeToString()
        sent = await self._link.publish(changed_subject(self._prefix, tenant.tenant_id), payload)
        if not sent:
            # Subscribers are then polling (their link is down too, or they re-check within
            # directory_push_ttl_seconds).
            log.warning("tenant change not pushed: nats unavailable", tenant_id=tenant.tenant_id)
