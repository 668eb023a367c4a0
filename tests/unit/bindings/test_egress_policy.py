"""The egress policy and secret scoping as functions: every address form that points inside is
refused, provider host lists hold, and the allow-list is the one exception."""

from __future__ import annotations

import pytest

from services.common.bindings import secret_scope
from services.common.bindings.egress import EgressPolicy, EgressRefused, parse_allow
from services.common.errors import FailedPrecondition

OPENAI = ("api.openai.com",)
BLOB = ("*.blob.core.windows.net",)
ANY_PUBLIC = ()  # e.g. a self-hosted PostgreSQL


@pytest.mark.parametrize(
    ("endpoint", "why"),
    [
        ("http://127.0.0.1:9901/", "loopback"),
        ("http://127.8.9.10/", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://0.0.0.0:8080/", "unspecified"),
        ("http://[::1]:8080/", "loopback"),
        ("http://[::]/", "unspecified"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[fd00::1]/", "private"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://10.1.2.3/", "private"),
        ("http://172.16.0.1/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://100.64.0.1/", "non-global"),
        ("http://224.0.0.1/", "multicast"),
        ("http://2130706433/", "non-canonical"),
        ("http://0177.0.0.1/", "non-canonical"),
        ("http://0x7f.0.0.1/", "non-canonical"),
        ("http://127.1/", "non-canonical"),
        ("postgresql://app@localhost:5432/db", "loopback"),  # a name resolving to loopback
    ],
)
async def test_inside_addresses_are_refused(endpoint: str, why: str) -> None:
    with pytest.raises(EgressRefused, match=why):
        await EgressPolicy().check(endpoint, ANY_PUBLIC)


@pytest.mark.parametrize(
    ("endpoint", "hosts"),
    [
        ("https://evil.example/v1", OPENAI),
        ("https://api.openai.com.evil.example/v1", OPENAI),
        ("https://8.8.8.8/v1", OPENAI),  # public, but a provider is named by host
        ("https://blob.core.windows.net", BLOB),  # the suffix alone is no account
        ("http://localhost:10000/devstoreaccount1", BLOB),
    ],
)
async def test_provider_host_lists(endpoint: str, hosts: tuple[str, ...]) -> None:
    with pytest.raises(EgressRefused, match="host"):
        await EgressPolicy().check(endpoint, hosts)


async def test_provider_hosts_and_public_addresses_pass() -> None:
    policy = EgressPolicy()
    # No DNS here: a provider's own name is accepted unresolved; the adapter checks again.
    await policy.check("https://api.openai.com/v1", OPENAI)
    await policy.check("https://acme.blob.core.windows.net", BLOB)
    await policy.check("postgresql://app@8.8.8.8:5432/db", ANY_PUBLIC)
    with pytest.raises(EgressRefused, match="does not resolve"):
        await policy.check("postgresql://app@db.invalid:5432/x", ANY_PUBLIC)


async def test_the_allow_list_is_the_only_exception() -> None:
    policy = EgressPolicy(["127.0.0.1:10000", "localhost:4566", "10.0.0.0/16"])
    await policy.check("http://127.0.0.1:10000/devstoreaccount1", BLOB)
    await policy.check("http://localhost:4566", ("*.amazonaws.com",))
    await policy.check("postgresql://app@10.0.3.4:5432/db", ANY_PUBLIC)
    for other in ("http://127.0.0.1:10001/", "http://localhost:4567", "http://10.1.0.1/"):
        with pytest.raises(EgressRefused):
            await policy.check(other, ANY_PUBLIC)
    # Spellings never match an allowed address.
    with pytest.raises(EgressRefused, match="non-canonical"):
        await policy.check("http://2130706433:10000/", BLOB)


def test_allow_entries_parse() -> None:
    entries = parse_allow(["127.0.0.1", "[::1]:8090", "minio:9000", "10.0.0.0/8", " "])
    assert [(e.host, str(e.network), e.port) for e in entries] == [
        (None, "127.0.0.1/32", None),
        (None, "::1/128", 8090),
        ("minio", "None", 9000),
        (None, "10.0.0.0/8", None),
    ]


@pytest.mark.parametrize(
    "ref",
    [
        "local://tenants/acme/llm-key",
        "local://tenants/acme/a/b",
        "aws-sm://makoto/acme/llm-key",
        "aws-sm://prod/makoto/acme/db#password",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:makoto/acme/db-AbCdEf",
        "azure-kv://vault1/acme-openai",
        "azure-kv://vault1/acme-openai/0123abcd",
    ],
)
def test_own_secret_references_are_in_scope(ref: str) -> None:
    assert secret_scope.in_scope(ref, "acme")
    secret_scope.check(ref, "acme", "llm.api_key_secret_ref")


@pytest.mark.parametrize(
    "ref",
    [
        "local://tenants/globex/llm-key",
        "local://llm-simulator-key",
        "local://tenants/acme",
        "local://tenants/acme/../globex/key",
        "local://tenants/acme-corp/key",
        "aws-sm://makoto/globex/llm-key",
        "aws-sm://makoto/acme",
        "aws-sm://makoto/acmex/key",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:makoto/globex/db-AbCdEf",
        "azure-kv://vault1/globex-openai",
        "azure-kv://vault1/acme-",
        "azure-kv://vault1/acmeopenai",
        "env://OPENAI_API_KEY",
        "vault://acme/key",
    ],
)
def test_foreign_and_platform_references_are_refused_without_echo(ref: str) -> None:
    assert not secret_scope.in_scope(ref, "acme")
    with pytest.raises(FailedPrecondition) as caught:
        secret_scope.check(ref, "acme", "tenant.bindings.llm.api_key_secret_ref")
    assert caught.value.reason == "SECRET_REF_OUT_OF_SCOPE"
    said = caught.value.message.split("; use ")[0]  # after it: the accepted forms, for this tenant
    assert ref not in said and ref not in str(caught.value.metadata)
    assert "tenant.bindings.llm.api_key_secret_ref" in caught.value.message


def test_platform_refs_are_allowed_only_where_given() -> None:
    secret_scope.check(
        "local://llm-simulator-key", "acme", "f", platform_refs=frozenset({"local://llm-simulator-key"})
    )


async def test_a_rebinding_name_is_caught_when_checked_again() -> None:
    """Bind time sees a public address; by build time the same name answers loopback."""
    answers = [["93.184.216.34"], ["127.0.0.1"]]
    asked: list[tuple[str, int]] = []

    async def dns(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return answers[min(len(asked), len(answers)) - 1]

    policy = EgressPolicy(resolver=dns)
    await policy.check("postgresql://app@db.rebind.example:5432/x", ANY_PUBLIC)  # bind time
    with pytest.raises(EgressRefused, match="loopback"):
        await policy.check("postgresql://app@db.rebind.example:5432/x", ANY_PUBLIC)  # build time
    assert asked == [("db.rebind.example", 5432)] * 2
