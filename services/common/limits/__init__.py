"""Per-tenant limits: plans' limits as values (model), the shared counters they are enforced
with (Redis, with a per-replica fallback), and the data plane's cached view of a tenant's
effective limits."""
