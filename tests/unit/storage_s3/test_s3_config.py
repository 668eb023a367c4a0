"""Binding -> S3Config: naming convention, presets, option validation, secret shapes, no secret in
errors."""

from __future__ import annotations

import re

import pytest
from makoto.tenant.v1 import tenant_pb2

from services.common.errors import FailedPrecondition
from services.storage.adapters.s3 import binding_violations, config_from_binding, default_bucket, parse_secret
from services.storage.adapters.s3.metadata import decode_value, encode_value

BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


def test_default_bucket_follows_the_architecture_document() -> None:
    assert default_bucket("acme") == "makoto-acme-assets"
    long_a, long_b = "a" * 60 + "x", "a" * 60 + "y"
    for tenant in (long_a, long_b, "a-" * 31 + "b"):
        name = default_bucket(tenant)
        assert BUCKET_RE.match(name) and len(name) <= 63, name
    assert default_bucket(long_a) != default_bucket(long_b)


def test_binding_names_bucket_and_presets() -> None:
    aws = config_from_binding("acme", tenant_pb2.ObjectStoreBinding(region="eu-west-1"), None)
    assert (aws.bucket, aws.region, aws.endpoint_url, aws.path_style) == (
        "makoto-acme-assets",
        "eu-west-1",
        None,
        False,
    )
    assert aws.checksums == "when_supported" and aws.part_size == 8 * 1024 * 1024
    minio = config_from_binding(
        "acme",
        tenant_pb2.ObjectStoreBinding(
            endpoint="http://minio:9000", bucket="shared", options={"preset": "minio"}
        ),
        {"access_key_id": "a", "secret_access_key": "b"},
    )
    assert (minio.bucket, minio.path_style, minio.region, minio.checksums) == (
        "shared",
        True,
        "us-east-1",
        "when_required",
    )


def test_invalid_options_are_field_violations() -> None:
    binding = tenant_pb2.ObjectStoreBinding(
        bucket="Bad_Bucket",
        endpoint="ftp://x",
        options={
            "part_size_bytes": "1024",
            "upload_concurrency": "x",
            "nope": "1",
            "conditional_writes": "maybe",
        },
    )
    fields = {f for f, _ in binding_violations(binding)}
    assert fields == {
        "object_store.bucket",
        "object_store.endpoint",
        "object_store.options[part_size_bytes]",
        "object_store.options[upload_concurrency]",
        "object_store.options[nope]",
        "object_store.options[conditional_writes]",
    }


def test_misconfigured_binding_never_echoes_the_secret() -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    with pytest.raises(FailedPrecondition) as err:
        config_from_binding(
            "acme",
            tenant_pb2.ObjectStoreBinding(options={"part_size_bytes": "1"}),
            {"secret_access_key": secret},
        )
    assert "acme" in err.value.message and secret not in err.value.message
    assert "credentials_secret_ref" in err.value.message  # the secret lacks access_key_id


@pytest.mark.parametrize(
    "value", ["plain", "", " lead", "trail ", "r\u00e9sum\u00e9", "=?UTF-8?B?AA==?=", "a\nb"]
)
def test_metadata_values_round_trip_header_safe(value: str) -> None:
    encoded = encode_value(value)
    assert all(0x20 <= ord(c) < 0x7F for c in encoded) and encoded.strip() == encoded and encoded
    assert decode_value(encoded) == value


def test_secret_shapes() -> None:
    assert parse_secret('{"access_key_id": "A", "secret_access_key": "S", "session_token": "T"}') == {
        "access_key_id": "A",
        "secret_access_key": "S",
        "session_token": "T",
    }
    assert parse_secret("A:S/with:colon") == {"access_key_id": "A", "secret_access_key": "S/with:colon"}
    with pytest.raises(FailedPrecondition) as err:
        parse_secret("just-a-secret-value")
    assert "just-a-secret-value" not in err.value.message
