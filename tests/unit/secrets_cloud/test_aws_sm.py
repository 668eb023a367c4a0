"""aws-sm:// against moto_server (and a fault-injecting proxy in front of it for what moto does
not do: throttling, refused credentials, 5xx)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aioboto3
import pytest
from pydantic import SecretStr

from services.common.errors import FailedPrecondition, InvalidArgument, ResourceExhausted, Unavailable
from services.common.secrets import SecretResolver, parse_ref
from services.common.secrets.aws_sm_backend import (
    AwsSecretsManagerBackend,
    AwsSecretsManagerConfig,
    target_of,
)
from tests.contract.emulators import MOTO_CREDENTIALS, Emulator, start_moto
from tests.contract.secret_backends import aws_config
from tests.support import make_settings
from tests.unit.secrets_cloud.aws_faults import (
    ACCESS_DENIED,
    INTERNAL,
    THROTTLED,
    UNRECOGNIZED_CLIENT,
    Fault,
    FaultyProxy,
)

VALUE = "aws-value-Zk93-never-print"


def _name() -> str:
    return f"unit/{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def proxy(secrets_moto: Emulator) -> AsyncIterator[FaultyProxy]:
    p = FaultyProxy(secrets_moto.endpoint)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


async def _raw(endpoint: str, region: str = "us-east-1") -> Any:
    session = aioboto3.Session(
        aws_access_key_id=MOTO_CREDENTIALS["access_key_id"],
        aws_secret_access_key=MOTO_CREDENTIALS["secret_access_key"],
    )
    return session.client("secretsmanager", region_name=region, endpoint_url=endpoint)


async def test_arn_refs_use_the_arns_region(secrets_moto: Emulator) -> None:
    name = _name()
    async with await _raw(secrets_moto.endpoint, "eu-west-1") as raw:
        arn = (await raw.create_secret(Name=name, SecretString='{"k": "from-eu", "n": 1}'))["ARN"]
    assert arn.startswith("arn:aws:secretsmanager:eu-west-1:")
    reader = AwsSecretsManagerBackend(aws_config(secrets_moto.endpoint, region="us-east-1"))
    resolver = SecretResolver({"aws-sm": reader})
    assert (await resolver.get(arn)).get_secret_value() == '{"k": "from-eu", "n": 1}'
    assert (await resolver.get(f"{arn}#k")).get_secret_value() == "from-eu"
    assert (await resolver.get(f"aws-sm://{arn}#n")).get_secret_value() == "1"
    # By name the configured region (us-east-1) is asked, where the secret does not exist.
    with pytest.raises(FailedPrecondition) as caught:
        await resolver.get(f"aws-sm://{name}")
    assert caught.value.reason == "SECRET_NOT_FOUND"


def test_reference_forms() -> None:
    named = target_of(parse_ref("aws-sm://prod/db_creds+x=y.z@a-b#password"), "us-east-1")
    assert (named.secret_id, named.region, named.json_key) == (
        "prod/db_creds+x=y.z@a-b",
        "us-east-1",
        "password",
    )
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:llm/key-AbC123"
    assert target_of(parse_ref(arn), "us-east-1").region == "eu-west-1"
    china = target_of(
        parse_ref("aws-sm://arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:k#f"), None
    )
    assert (china.region, china.json_key) == ("cn-north-1", "f")
    assert china.secret_id == "arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:k"


async def test_invalid_refs_are_refused_before_any_request(proxy: FaultyProxy) -> None:
    resolver = SecretResolver({"aws-sm": AwsSecretsManagerBackend(aws_config(proxy.endpoint))})
    for ref in (
        "aws-sm://has space",
        "aws-sm://name#",
        "arn:aws:secretsmanager:eu-west-1:123:secret:x",  # account id is 12 digits
        "aws-sm://" + "n" * 513,
    ):
        with pytest.raises(FailedPrecondition) as caught:
            await resolver.get(ref)
        assert caught.value.reason == "SECRET_REF_INVALID"
    assert sum(proxy.calls.values()) == 0


async def test_secret_binary_is_text_when_utf8_and_refused_otherwise(secrets_moto: Emulator) -> None:
    text, blob = _name(), _name()
    async with await _raw(secrets_moto.endpoint) as raw:
        await raw.create_secret(Name=text, SecretBinary="bïnary ✓\n".encode())
        await raw.create_secret(Name=blob, SecretBinary=b"\xff\xfe" + VALUE.encode())
    resolver = SecretResolver({"aws-sm": AwsSecretsManagerBackend(aws_config(secrets_moto.endpoint))})
    assert (await resolver.get(f"aws-sm://{text}")).get_secret_value() == "bïnary ✓\n"
    with pytest.raises(FailedPrecondition) as caught:
        await resolver.get(f"aws-sm://{blob}")
    assert caught.value.reason == "SECRET_NOT_TEXT" and VALUE not in str(caught.value.to_status())


async def test_a_secret_marked_for_deletion_is_a_failed_precondition(secrets_moto: Emulator) -> None:
    name = _name()
    backend = AwsSecretsManagerBackend(aws_config(secrets_moto.endpoint, sm_cache_ttl_seconds=0))
    ref = await backend.set(f"aws-sm://{name}", VALUE)
    async with await _raw(secrets_moto.endpoint) as raw:
        await raw.delete_secret(SecretId=name, RecoveryWindowInDays=7)
    with pytest.raises(FailedPrecondition) as caught:
        await backend.get(parse_ref(ref))
    assert caught.value.reason == "SECRET_STATE_INVALID" and name in caught.value.message
    assert VALUE not in str(caught.value.to_status())


async def test_set_creates_then_puts_a_new_version_and_refreshes_own_cache(secrets_moto: Emulator) -> None:
    backend = AwsSecretsManagerBackend(aws_config(secrets_moto.endpoint, sm_cache_ttl_seconds=60))
    ref = f"aws-sm://{_name()}"
    assert await backend.set(ref, "v1") == ref
    assert (await backend.get(parse_ref(ref))).get_secret_value() == "v1"
    await backend.set(ref, SecretStr("v2"))
    # its own write is seen at once despite the 60 s TTL
    assert (await backend.get(parse_ref(ref))).get_secret_value() == "v2"
    with pytest.raises(InvalidArgument):
        await backend.set(f"{ref}#key", "x")
    with pytest.raises(InvalidArgument):
        await backend.set("local://x", "x")


async def test_throttling_is_retried_then_succeeds(proxy: FaultyProxy) -> None:
    backend = AwsSecretsManagerBackend(aws_config(proxy.endpoint, sm_max_attempts=4))
    ref = await backend.set(f"aws-sm://{_name()}", VALUE)
    backend.cache.clear()
    proxy.calls.clear()
    proxy.fail_next(2, THROTTLED)
    assert (await backend.get(parse_ref(ref))).get_secret_value() == VALUE
    assert proxy.calls["GetSecretValue"] == 3


async def test_persistent_throttling_is_resource_exhausted_after_our_retries_only(proxy: FaultyProxy) -> None:
    backend = AwsSecretsManagerBackend(aws_config(proxy.endpoint, sm_max_attempts=3))
    proxy.fail_next(10, THROTTLED)
    with pytest.raises(ResourceExhausted) as caught:
        await backend.get(parse_ref("aws-sm://throttled/one"))
    assert caught.value.reason == "SECRET_STORE_THROTTLED"
    assert caught.value.retry_after_seconds is not None and caught.value.retry_after_seconds > 0
    assert "aws-sm://throttled/one" in caught.value.message
    # exactly our attempts: botocore's own retries are off
    assert proxy.calls["GetSecretValue"] == 3


async def test_retry_after_is_honoured_and_a_long_one_handed_back(proxy: FaultyProxy) -> None:
    backend = AwsSecretsManagerBackend(aws_config(proxy.endpoint, sm_max_retry_after_seconds=2))
    ref = await backend.set(f"aws-sm://{_name()}", VALUE)
    backend.cache.clear()
    proxy.fail_next(1, Fault(400, "ThrottlingException", retry_after=0.3))
    started = time.monotonic()
    assert (await backend.get(parse_ref(ref))).get_secret_value() == VALUE
    assert time.monotonic() - started >= 0.3

    backend.cache.clear()
    proxy.calls.clear()
    proxy.fail_next(1, Fault(400, "ThrottlingException", retry_after=30))
    with pytest.raises(ResourceExhausted) as caught:
        await backend.get(parse_ref(ref))
    assert caught.value.retry_after_seconds == 30 and proxy.calls["GetSecretValue"] == 1


@pytest.mark.parametrize("fault", [ACCESS_DENIED, UNRECOGNIZED_CLIENT], ids=lambda f: f.error_type)
async def test_refused_credentials_are_failed_precondition_not_retried(
    proxy: FaultyProxy, fault: Fault
) -> None:
    backend = AwsSecretsManagerBackend(aws_config(proxy.endpoint))
    proxy.fail_next(1, fault)
    with pytest.raises(FailedPrecondition) as caught:
        await backend.get(parse_ref("aws-sm://llm/key"))
    err = caught.value
    assert err.reason == "SECRET_STORE_DENIED" and fault.error_type in err.message
    assert "aws-sm://llm/key" in err.message
    assert MOTO_CREDENTIALS["secret_access_key"] not in str(err.to_status())
    assert proxy.calls["GetSecretValue"] == 1


async def test_server_errors_are_retried_then_unavailable(proxy: FaultyProxy) -> None:
    backend = AwsSecretsManagerBackend(aws_config(proxy.endpoint, sm_max_attempts=2))
    proxy.fail_next(5, INTERNAL)
    with pytest.raises(Unavailable) as caught:
        await backend.get(parse_ref("aws-sm://llm/key"))
    assert caught.value.reason == "SECRET_STORE_UNAVAILABLE"
    assert proxy.calls["GetSecretValue"] == 2


async def test_cache_single_flight_and_ttl(proxy: FaultyProxy) -> None:
    backend = AwsSecretsManagerBackend(aws_config(proxy.endpoint, sm_cache_ttl_seconds=0.4))
    ref = parse_ref(await backend.set(f"aws-sm://{_name()}", VALUE))
    backend.cache.clear()
    proxy.calls.clear()
    values = await asyncio.gather(*(backend.get(ref) for _ in range(10)))
    assert {v.get_secret_value() for v in values} == {VALUE}
    assert proxy.calls["GetSecretValue"] == 1  # ten concurrent first reads, one request
    await backend.get(ref)
    assert proxy.calls["GetSecretValue"] == 1  # within the TTL
    await asyncio.sleep(0.45)
    await backend.get(ref)
    assert proxy.calls["GetSecretValue"] == 2


async def test_stopping_the_store_mid_use_gives_unavailable() -> None:
    moto = start_moto()
    try:
        backend = AwsSecretsManagerBackend(aws_config(moto.endpoint, sm_cache_ttl_seconds=30))
        ref = parse_ref(await backend.set(f"aws-sm://{_name()}", VALUE))
        assert (await backend.get(ref)).get_secret_value() == VALUE
        moto.stop()
        assert (await backend.get(ref)).get_secret_value() == VALUE  # still cached
        backend.cache.clear()  # as if the TTL had passed
        with pytest.raises(Unavailable):
            await backend.get(ref)
    finally:
        moto.stop()


async def test_configured_from_the_environment(
    secrets_moto: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _name()
    async with await _raw(secrets_moto.endpoint, "ap-northeast-1") as raw:
        arn = (await raw.create_secret(Name=name, SecretString=VALUE))["ARN"]
    monkeypatch.setenv("MAKOTO_AWS_ENDPOINT_URL", secrets_moto.endpoint)
    monkeypatch.setenv("AWS_REGION", "ap-northeast-1")  # the standard variable, no MAKOTO_AWS_REGION
    monkeypatch.delenv("MAKOTO_AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", MOTO_CREDENTIALS["access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", MOTO_CREDENTIALS["secret_access_key"])
    resolver = SecretResolver.for_settings(make_settings(tmp_path / "home"))
    assert "aws-sm" in resolver.schemes
    assert (await resolver.get(f"aws-sm://{name}")).get_secret_value() == VALUE
    assert (await resolver.get(arn)).get_secret_value() == VALUE
    assert MOTO_CREDENTIALS["secret_access_key"] not in repr(resolver)


async def test_no_credentials_anywhere_is_failed_precondition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    for var in ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("AWS_WEB_IDENTITY_TOKEN_FILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    backend = AwsSecretsManagerBackend(
        AwsSecretsManagerConfig(endpoint_url="http://127.0.0.1:9", region="us-east-1")
    )
    with pytest.raises(FailedPrecondition) as caught:
        await backend.get(parse_ref("aws-sm://llm/key"))
    assert caught.value.reason == "SECRET_STORE_CREDENTIALS_MISSING"


def test_config_and_backend_reprs_hide_credentials() -> None:
    config = AwsSecretsManagerConfig(
        access_key_id="AKIAEXAMPLE",
        secret_access_key=SecretStr("wJalr-secret"),
        session_token=SecretStr("tok"),
    )
    backend = AwsSecretsManagerBackend(config)
    for text in (repr(config), str(config), repr(backend)):
        assert "wJalr-secret" not in text and "tok'" not in text
