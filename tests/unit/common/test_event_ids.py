"""Generated usage-event ids are unique: within a process (a counter) and across processes,
forked workers included (a fresh random prefix in the child). A repeated id would make
MeteringService drop the event as a duplicate: a call never billed."""

from __future__ import annotations

import os

from services.common.metering_client import new_event


def _id() -> str:
    return new_event(source="storage", meter="api_calls", tenant_id="acme", value=1).id


def test_ids_are_unique_within_a_process() -> None:
    ids = [_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert all(1 <= len(i) <= 128 for i in ids)  # the proto's rule on UsageEvent.id


def test_a_forked_child_draws_its_own_ids() -> None:
    parent_before = _id()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its first ids, then leave without running pytest's exit
        try:
            os.write(write_end, " ".join(_id() for _ in range(3)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        child_ids = pipe.read().split()
    os.waitpid(pid, 0)
    parent_after = [_id() for _ in range(3)]
    assert len(child_ids) == 3
    prefix = parent_before.rsplit("-", 1)[0]
    assert all(not c.startswith(prefix) for c in child_ids)
    assert not set(child_ids) & {parent_before, *parent_after}
