"""The secret-store contract: every secret backend (local, env, aws-sm on moto_server, azure-kv on
the fake Key Vault) answers the same situations the same way. Capabilities (JSON keys, cache
TTL) come from the table in secret_backends.py."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid

import pytest

from services.common.errors import FailedPrecondition, MakotoError, Unavailable
from tests.contract import secret_backends
from tests.contract.secret_backends import DeadStore, SecretStoreHarness

# The fixtures live in secret_backends.py (tests/contract/conftest.py belongs to other suites).
secrets_moto = secret_backends.secrets_moto
vault_tls = secret_backends.vault_tls
fake_key_vault = secret_backends.fake_key_vault
secret_store = secret_backends.secret_store
unreachable_secret_store = secret_backends.unreachable_secret_store

VALUE = "sk-contract-7Hq2-do-not-leak"
ODD_VALUE = ' pässwörd ✓ 秘密 🔑\nsecond line\r\n\ttab "quoted" \\backslash\' #hash /slash \n'


def _name() -> str:
    return f"ct-{uuid.uuid4().hex[:12]}"


def _error_text(err: MakotoError) -> str:
    return f"{err} {err.message} {err.metadata} {err.to_status()} {err!r}"


async def test_resolves_an_existing_secret(secret_store: SecretStoreHarness) -> None:
    ref = await secret_store.write(_name(), VALUE)
    got = await secret_store.resolver.get(ref)
    assert got.get_secret_value() == VALUE
    assert VALUE not in repr(got) and VALUE not in str(got)
    # a second read (cached or not) gives the same value
    assert (await secret_store.resolver.get(ref)).get_secret_value() == VALUE


async def test_missing_secret_names_the_reference_never_a_value(secret_store: SecretStoreHarness) -> None:
    await secret_store.write(_name(), VALUE)  # something is in the store
    missing = secret_store.ref_for(_name())
    with pytest.raises(FailedPrecondition) as caught:
        await secret_store.resolver.get(missing)
    err = caught.value
    assert err.reason == "SECRET_NOT_FOUND"
    assert missing in err.message and err.metadata["secret_ref"] == missing
    assert VALUE not in _error_text(err)


async def test_values_round_trip_exactly(secret_store: SecretStoreHarness) -> None:
    large = ("0123456789abcdef✓" * 1200)[:20_000]
    for value in (ODD_VALUE, large, "x"):
        ref = await secret_store.write(_name(), value)
        assert (await secret_store.resolver.get(ref)).get_secret_value() == value


async def test_json_key_selection_or_refusal(secret_store: SecretStoreHarness) -> None:
    doc = {"username": "app", "password": "pw-✓\nline2", "port": 5432, "nested": {"a": [1, True, None]}}
    ref = await secret_store.write(_name(), json.dumps(doc))
    if not secret_store.json_keys:
        # A backend without JSON keys refuses `#key` rather than answering the whole document.
        with pytest.raises(FailedPrecondition) as refused:
            await secret_store.resolver.get(f"{ref}#password")
        assert "pw-" not in _error_text(refused.value)
        return
    assert (await secret_store.resolver.get(f"{ref}#password")).get_secret_value() == "pw-✓\nline2"
    assert (await secret_store.resolver.get(f"{ref}#username")).get_secret_value() == "app"
    assert (await secret_store.resolver.get(f"{ref}#port")).get_secret_value() == "5432"
    assert json.loads((await secret_store.resolver.get(f"{ref}#nested")).get_secret_value()) == doc["nested"]
    # the whole document is still there without a key
    assert json.loads((await secret_store.resolver.get(ref)).get_secret_value()) == doc

    with pytest.raises(FailedPrecondition) as no_key:
        await secret_store.resolver.get(f"{ref}#absent")
    assert no_key.value.reason == "SECRET_KEY_MISSING" and "absent" in no_key.value.message
    assert "pw-" not in _error_text(no_key.value) and "5432" not in _error_text(no_key.value)

    plain = await secret_store.write(_name(), VALUE)
    with pytest.raises(FailedPrecondition) as not_json:
        await secret_store.resolver.get(f"{plain}#password")
    assert not_json.value.reason == "SECRET_NOT_JSON" and VALUE not in _error_text(not_json.value)


async def test_rotation_is_seen_once_the_ttl_has_passed(secret_store: SecretStoreHarness) -> None:
    name = _name()
    ref = await secret_store.write(name, "generation-1")
    assert (await secret_store.resolver.get(ref)).get_secret_value() == "generation-1"
    rotated_at = time.monotonic()
    await secret_store.write(name, "generation-2")
    right_after = (await secret_store.resolver.get(ref)).get_secret_value()
    if secret_store.ttl == 0:
        assert right_after == "generation-2"
    elif time.monotonic() - rotated_at < secret_store.ttl:
        assert right_after == "generation-1"  # served from the cache within the TTL
    await asyncio.sleep(secret_store.ttl + 0.05)
    assert (await secret_store.resolver.get(ref)).get_secret_value() == "generation-2"


async def test_concurrent_reads_agree(secret_store: SecretStoreHarness) -> None:
    ref = await secret_store.write(_name(), VALUE)
    values = await asyncio.gather(*(secret_store.resolver.get(ref) for _ in range(20)))
    assert {v.get_secret_value() for v in values} == {VALUE}


async def test_values_stay_out_of_logs_and_reprs(
    secret_store: SecretStoreHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every library at its most talkative
    ref = await secret_store.write(_name(), VALUE)
    assert (await secret_store.resolver.get(ref)).get_secret_value() == VALUE
    with pytest.raises(FailedPrecondition):
        await secret_store.resolver.get(secret_store.ref_for(_name()))
    logged = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    assert VALUE not in logged
    assert VALUE not in repr(secret_store.resolver)


async def test_unreachable_store_is_unavailable(unreachable_secret_store: DeadStore) -> None:
    started = time.monotonic()
    with pytest.raises(Unavailable) as caught:
        await unreachable_secret_store.resolver.get(unreachable_secret_store.ref)
    assert unreachable_secret_store.ref in caught.value.message
    assert caught.value.reason == "SECRET_STORE_UNAVAILABLE"
    assert caught.value.retry_after_seconds is not None
    assert time.monotonic() - started < 10  # retried briefly, not forever
