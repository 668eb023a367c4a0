"""azure-kv:// through the real azure-keyvault-secrets SDK against the fake Key Vault REST API
(tests/contract/fake_key_vault.py: not Microsoft's emulator; it covers what the adapter uses)."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from azure.core.exceptions import ClientAuthenticationError
from pydantic import ValidationError

from services.common.errors import FailedPrecondition, InvalidArgument, ResourceExhausted, Unavailable
from services.common.secrets import SecretResolver, SecretStr, parse_ref
from services.common.secrets.azure_kv_backend import (
    VAULT_SCOPE,
    AzureKeyVaultBackend,
    AzureKeyVaultConfig,
    StaticTokenCredential,
    target_of,
)
from tests.contract.fake_key_vault import FakeKeyVault, TlsFiles
from tests.contract.secret_backends import FORBIDDEN_TOKEN, VAULT_TOKEN, azure_backend, azure_config
from tests.support import free_port, make_settings

VALUE = "kv-value-Qm71-never-print"


def _name() -> str:
    return f"unit-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def vault(vault_tls: TlsFiles) -> AsyncIterator[FakeKeyVault]:
    """A vault of the test's own (fresh request log, fresh origin for the SDK's challenge cache)."""
    fake = FakeKeyVault(vault_tls, token=VAULT_TOKEN, forbidden_tokens=(FORBIDDEN_TOKEN,))
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


async def test_challenge_flow_then_bearer_token(
    vault: FakeKeyVault, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    name = _name()
    vault.put(name, VALUE)
    backend = azure_backend(vault.url, vault.tls)
    assert (await backend.get(parse_ref(f"azure-kv://acme/{name}"))).get_secret_value() == VALUE
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert VAULT_TOKEN not in logged and VALUE not in logged
    first, second = vault.requests[0], vault.requests[1]
    # The SDK first elicits the challenge without a token, then sends the token.
    assert first.authorization is None and first.status == 401
    assert second.authorization == f"Bearer {VAULT_TOKEN}" and second.status == 200
    assert all(r.api_version for r in vault.requests)
    assert second.path in (f"/secrets/{name}", f"/secrets/{name}/")


async def test_versions_and_latest(vault: FakeKeyVault) -> None:
    name = _name()
    v1 = vault.put(name, "first")
    vault.put(name, "second")
    resolver = SecretResolver({"azure-kv": azure_backend(vault.url, vault.tls)})
    assert (await resolver.get(f"azure-kv://acme/{name}")).get_secret_value() == "second"
    assert (await resolver.get(f"azure-kv://acme/{name}/{v1}")).get_secret_value() == "first"
    with pytest.raises(FailedPrecondition) as caught:
        await resolver.get(f"azure-kv://acme/{name}/{uuid.uuid4().hex}")
    assert caught.value.reason == "SECRET_NOT_FOUND"


async def test_set_writes_a_new_version_and_refreshes_own_cache(vault: FakeKeyVault) -> None:
    backend = azure_backend(vault.url, vault.tls, cache_ttl_seconds=60)
    ref = f"azure-kv://acme/{_name()}"
    assert await backend.set(ref, "v1") == ref
    assert (await backend.get(parse_ref(ref))).get_secret_value() == "v1"
    await backend.set(ref, SecretStr("v2 ✓\n"))
    assert (await backend.get(parse_ref(ref))).get_secret_value() == "v2 ✓\n"
    name = ref.rsplit("/", 1)[1]
    assert [v.value for v in vault.secrets[name]] == ["v1", "v2 ✓\n"]
    for bad in (f"{ref}/abc123", f"{ref}#k", "aws-sm://x"):
        with pytest.raises(InvalidArgument):
            await backend.set(bad, "x")


async def test_disabled_secret_is_failed_precondition(vault: FakeKeyVault) -> None:
    name = _name()
    vault.put(name, VALUE)
    vault.set_enabled(name, None, False)
    with pytest.raises(FailedPrecondition) as caught:
        await azure_backend(vault.url, vault.tls).get(parse_ref(f"azure-kv://acme/{name}"))
    assert caught.value.reason == "SECRET_DISABLED" and VALUE not in str(caught.value.to_status())


async def test_throttling_honours_retry_after_then_succeeds(vault: FakeKeyVault) -> None:
    name = _name()
    vault.put(name, VALUE)
    backend = azure_backend(vault.url, vault.tls)
    await backend.get(parse_ref(f"azure-kv://acme/{name}"))  # challenge done, token cached
    backend.cache.clear()
    before = len(vault.requests)
    vault.fail_next(2, retry_after=0.2)
    started = time.monotonic()
    assert (await backend.get(parse_ref(f"azure-kv://acme/{name}"))).get_secret_value() == VALUE
    assert time.monotonic() - started >= 0.4
    assert [r.status for r in vault.requests[before:]] == [429, 429, 200]


async def test_persistent_throttling_is_resource_exhausted_with_the_hint(vault: FakeKeyVault) -> None:
    backend = azure_backend(vault.url, vault.tls, max_attempts=3, max_retry_after_seconds=5)
    vault.fail_next(10, retry_after=0.05)
    with pytest.raises(ResourceExhausted) as caught:
        await backend.get(parse_ref("azure-kv://acme/llm-key"))
    assert caught.value.reason == "SECRET_STORE_THROTTLED" and caught.value.retry_after_seconds == 0.05
    assert [r.status for r in vault.requests].count(429) == 3  # the SDK's own retries are off
    vault.clear_faults()

    vault.fail_next(1, retry_after=60)  # longer than we hold a call for: handed back at once
    backend.cache.clear()
    before = len(vault.requests)
    with pytest.raises(ResourceExhausted) as long_wait:
        await backend.get(parse_ref("azure-kv://acme/llm-key"))
    assert long_wait.value.retry_after_seconds == 60 and len(vault.requests) - before == 1


async def test_server_errors_are_retried_then_unavailable(vault: FakeKeyVault) -> None:
    vault.fail_next(10, status=503, code="ServiceUnavailable")
    with pytest.raises(Unavailable) as caught:
        await azure_backend(vault.url, vault.tls, max_attempts=2).get(parse_ref("azure-kv://acme/llm-key"))
    assert (
        caught.value.reason == "SECRET_STORE_UNAVAILABLE"
        and "azure-kv://acme/llm-key" in caught.value.message
    )


@pytest.mark.parametrize("token", ["wrong-token", FORBIDDEN_TOKEN])
async def test_refused_token_is_failed_precondition(vault: FakeKeyVault, token: str) -> None:
    name = _name()
    vault.put(name, VALUE)
    with pytest.raises(FailedPrecondition) as caught:
        await azure_backend(vault.url, vault.tls, token=token).get(parse_ref(f"azure-kv://acme/{name}"))
    text = str(caught.value.to_status())
    assert caught.value.reason == "SECRET_STORE_DENIED" and f"azure-kv://acme/{name}" in caught.value.message
    assert token not in text and VALUE not in text


async def test_challenge_for_another_resource_gets_no_token(vault: FakeKeyVault) -> None:
    """With the SDK's check on (the default), a vault whose challenge names a resource outside the
    vault's own domain (here: 127.0.0.1 vs vault.azure.net) never receives the token."""
    name = _name()
    vault.put(name, VALUE)
    backend = azure_backend(vault.url, vault.tls, verify_challenge_resource=True)
    with pytest.raises(FailedPrecondition) as caught:
        await backend.get(parse_ref(f"azure-kv://acme/{name}"))
    assert "challenge" in caught.value.message
    assert all(r.authorization is None for r in vault.requests)


async def test_untrusted_certificate_is_failed_precondition(vault: FakeKeyVault) -> None:
    backend = AzureKeyVaultBackend(
        AzureKeyVaultConfig(vault_urls={"acme": vault.url}, verify_challenge_resource=False, max_attempts=3),
        credential=StaticTokenCredential(VAULT_TOKEN),
    )
    with pytest.raises(FailedPrecondition) as caught:
        await backend.get(parse_ref("azure-kv://acme/llm-key"))
    assert caught.value.reason == "SECRET_STORE_TLS"
    assert vault.requests == []  # nothing got past the TLS handshake


async def test_static_credential_only_serves_the_vault_scope() -> None:
    cred = StaticTokenCredential(VAULT_TOKEN)
    assert (await cred.get_token(VAULT_SCOPE)).token == VAULT_TOKEN
    with pytest.raises(ClientAuthenticationError):
        await cred.get_token("https://evil.example.com/.default")
    with pytest.raises(ClientAuthenticationError):
        await cred.get_token()
    assert VAULT_TOKEN not in repr(cred)


def test_reference_forms(vault_tls: TlsFiles) -> None:
    config = AzureKeyVaultConfig(vault_urls={"acme": "https://127.0.0.1:9443/"})
    t = target_of(parse_ref("azure-kv://acme/db-pass/0123abcd#user"), config)
    assert (t.vault_url, t.name, t.version, t.json_key) == (
        "https://127.0.0.1:9443",
        "db-pass",
        "0123abcd",
        "user",
    )
    assert (
        target_of(parse_ref("azure-kv://Globex-Prod/k"), config).vault_url
        == "https://globex-prod.vault.azure.net"
    )
    host = target_of(parse_ref("azure-kv://globex.vault.azure.net/k"), config)
    assert host.vault_url == "https://globex.vault.azure.net" and host.version is None
    sovereign = AzureKeyVaultConfig(url_template="https://{vault}.vault.azure.cn")
    assert target_of(parse_ref("azure-kv://acme/k"), sovereign).vault_url == "https://acme.vault.azure.cn"
    for bad in (
        "azure-kv://acme",  # no secret name
        "azure-kv://acme/with_underscore",
        "azure-kv://acme/k/v/extra",
        "azure-kv://acme/k/not-a-version!",
        "azure-kv://acme/k#",
        "azure-kv://evil.example.com/k",  # a host outside the Key Vault domains
        "azure-kv://127.0.0.1:9443/k",
        "azure-kv://ab/k",  # vault names are 3-24 characters
    ):
        with pytest.raises(FailedPrecondition) as caught:
            target_of(parse_ref(bad), config)
        assert caught.value.reason == "SECRET_REF_INVALID", bad


async def test_no_credential_configured_is_failed_precondition(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "azure.identity.aio", None)  # azure-identity absent
    backend = AzureKeyVaultBackend(
        AzureKeyVaultConfig(vault_urls={"acme": f"https://127.0.0.1:{free_port()}"})
    )
    with pytest.raises(FailedPrecondition) as caught:
        await backend.get(parse_ref("azure-kv://acme/llm-key"))
    assert caught.value.reason == "SECRET_STORE_CREDENTIALS_MISSING"
    assert "MAKOTO_AZURE_KV_ACCESS_TOKEN" in caught.value.message


async def test_cache_single_flight_and_ttl(vault: FakeKeyVault) -> None:
    name = _name()
    vault.put(name, VALUE)
    backend = azure_backend(vault.url, vault.tls, cache_ttl_seconds=0.4)
    ref = parse_ref(f"azure-kv://acme/{name}")

    def gets() -> int:
        return sum(1 for r in vault.requests if r.method == "GET" and r.status == 200)

    values = await asyncio.gather(*(backend.get(ref) for _ in range(10)))
    assert {v.get_secret_value() for v in values} == {VALUE} and gets() == 1
    await backend.get(ref)
    assert gets() == 1
    await asyncio.sleep(0.45)
    await backend.get(ref)
    assert gets() == 2


async def test_stopping_the_vault_mid_use_gives_unavailable(vault_tls: TlsFiles) -> None:
    fake = FakeKeyVault(vault_tls, token=VAULT_TOKEN)
    await fake.start()
    try:
        name = _name()
        fake.put(name, VALUE)
        backend = azure_backend(fake.url, vault_tls, cache_ttl_seconds=30)
        ref = parse_ref(f"azure-kv://acme/{name}")
        assert (await backend.get(ref)).get_secret_value() == VALUE
        await fake.stop()
        assert (await backend.get(ref)).get_secret_value() == VALUE  # still cached
        backend.cache.clear()  # as if the TTL had passed
        with pytest.raises(Unavailable):
            await backend.get(ref)
    finally:
        await fake.stop()


async def test_configured_from_the_environment(
    fake_key_vault: FakeKeyVault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _name()
    fake_key_vault.put(name, VALUE)
    monkeypatch.setenv("MAKOTO_AZURE_KV_VAULT_URLS", f'{{"acme": "{fake_key_vault.url}"}}')
    monkeypatch.setenv("MAKOTO_AZURE_KV_ACCESS_TOKEN", VAULT_TOKEN)
    monkeypatch.setenv("MAKOTO_AZURE_KV_CA_BUNDLE", str(fake_key_vault.tls.cert))
    monkeypatch.setenv("MAKOTO_AZURE_KV_VERIFY_CHALLENGE_RESOURCE", "false")
    resolver = SecretResolver.for_settings(make_settings(tmp_path / "home"))
    assert (await resolver.get(f"azure-kv://acme/{name}")).get_secret_value() == VALUE
    assert VAULT_TOKEN not in repr(resolver)


def test_vault_urls_must_be_https() -> None:
    with pytest.raises(ValidationError):
        AzureKeyVaultConfig(vault_urls={"acme": "http://127.0.0.1:8080"})
    with pytest.raises(ValidationError):
        AzureKeyVaultConfig(url_template="https://vault.example.net")  # no {vault}


def test_config_repr_hides_the_token(vault_tls: TlsFiles) -> None:
    config = azure_config("https://127.0.0.1:1", vault_tls, access_token=SecretStr(VAULT_TOKEN))
    assert VAULT_TOKEN not in repr(config) and VAULT_TOKEN not in str(config)
    assert VAULT_TOKEN not in repr(AzureKeyVaultBackend(config))
