"""Item-store endpoint URLs (object and LLM endpoints and secret-reference syntax are rules in
the .proto, applied by protovalidate)."""

from __future__ import annotations

from urllib.parse import urlsplit

Violations = list[tuple[str, str]]


def url_violations(value: str, at: str) -> Violations:
    """An endpoint, when given, is an http(s) URL with a host and no embedded credentials."""
    if not value:
        return []
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return [(at, "must be an http(s) URL")]
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [(at, "must be an http(s) URL")]
    if parts.username or parts.password:
        return [(at, "must not carry credentials; use the secret reference field")]
    return []
