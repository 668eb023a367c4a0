"""The AWS credential secret every AWS-backed binding reads (S3, DynamoDB, and TenantService's
provisioning): JSON {"access_key_id", "secret_access_key", "session_token"?} or
ACCESS_KEY_ID:SECRET_ACCESS_KEY."""

from __future__ import annotations

import json

AwsKeys = tuple[str, str, str | None]


def aws_keys(secret: str) -> AwsKeys | None:
    """(access_key_id, secret_access_key, session_token or None); None when the secret has
    neither shape (callers say so in their own error, never quoting the value)."""
    text = secret.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
            key_id, secret_key = str(data["access_key_id"]), str(data["secret_access_key"])
            token = data.get("session_token")
        except (ValueError, KeyError, TypeError):
            return None
        return key_id, secret_key, str(token) if token else None
    key_id, _, secret_key = text.partition(":")
    return (key_id, secret_key, None) if key_id and secret_key else None
