"""Binding + secret -> BlobConfig: container naming, credential kinds and secret shapes, metadata
name encoding."""

from __future__ import annotations

import re

import pytest
from makoto.tenant.v1 import tenant_pb2

from services.common.errors import FailedPrecondition
from services.storage.adapters.azure_blob import (
    binding_violations,
    config_from_binding,
    default_container,
    parse_secret,
)
from services.storage.adapters.azure_blob.metadata import decode_name, encode_name

CONTAINER_RE = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$")
IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def test_default_container_follows_the_architecture_document() -> None:
    assert default_container("acme") == "acme-assets"
    for tenant in ("a" * 63, "ab--c", "abc-", "a" * 60 + "x", "a" * 60 + "y"):
        assert CONTAINER_RE.match(default_container(tenant)), tenant
    assert default_container("ab--c") != default_container("ab-c")
    assert default_container("a" * 60 + "x") != default_container("a" * 60 + "y")


def test_credential_kinds() -> None:
    url = "http://127.0.0.1:10000/devstoreaccount1"
    binding = tenant_pb2.ObjectStoreBinding(endpoint=url)
    key = config_from_binding("acme", binding, {"account_key": "a2V5"})
    assert (key.account_name, key.can_sign, key.account_url) == ("devstoreaccount1", True, url)
    sas = config_from_binding("acme", binding, {"sas_token": "?sv=2024&sig=abc"})
    assert (sas.can_sign, sas.sas_token) == (False, "sv=2024&sig=abc")
    conn = config_from_binding(
        "acme",
        tenant_pb2.ObjectStoreBinding(),
        {
            "connection_string": (
                "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net"
            )
        },
    )
    assert (conn.account_url, conn.account_name, conn.can_sign) == (
        "https://acct.blob.core.windows.net",
        "acct",
        True,
    )
    assert conn.container == "acme-assets"


def test_unusable_binding_is_failed_precondition_without_secret() -> None:
    with pytest.raises(FailedPrecondition) as err:
        config_from_binding(
            "acme", tenant_pb2.ObjectStoreBinding(endpoint="http://x/acct"), {"other": "s3cr3t"}
        )
    assert "credentials_secret_ref" in err.value.message and "s3cr3t" not in err.value.message
    fields = {
        f
        for f, _ in binding_violations(
            tenant_pb2.ObjectStoreBinding(bucket="Bad--Name", options={"part_size_bytes": "1", "x": "1"})
        )
    }
    assert fields == {
        "object_store.bucket",
        "object_store.options[part_size_bytes]",
        "object_store.options[x]",
    }


@pytest.mark.parametrize(
    "key", ["a", "0-starts-with-digit", "with_underscore", "a_2d", "x-y_z", "u_", "\u00e9"]
)
def test_metadata_names_are_identifiers_and_round_trip(key: str) -> None:
    name = encode_name(key)
    assert IDENTIFIER_RE.match(name) and name == name.lower()
    assert decode_name(name) == key


def test_secret_shapes() -> None:
    conn = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5"
    assert parse_secret(conn) == {"connection_string": conn}
    assert parse_secret("?sv=2024-01-01&sp=r&sig=abc") == {"sas_token": "?sv=2024-01-01&sp=r&sig=abc"}
    assert parse_secret("a2V5") == {"account_key": "a2V5"}
    assert parse_secret('{"account_name": "acct", "account_key": "a2V5"}') == {
        "account_name": "acct",
        "account_key": "a2V5",
    }
    with pytest.raises(FailedPrecondition) as err:
        parse_secret('{"password": "hunter2"}')
    assert "hunter2" not in err.value.message
