"""Rules every backend's binding config applies the same way: endpoint URLs, typed options and
the one FailedPrecondition a misconfigured binding answers with (object and LLM endpoints and
secret-reference syntax are rules in the .proto, applied by protovalidate)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from services.common.errors import FailedPrecondition

if TYPE_CHECKING:
    from makoto.tenant.v1 import tenant_pb2

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


# Options every object backend takes alike (its client's concurrency, retries and timeouts, and
# the control plane's flags); a backend adds its own.
OBJECT_INTS: Mapping[str, tuple[int, int]] = {"upload_concurrency": (1, 32), "max_attempts": (1, 10)}
OBJECT_FLOATS: Mapping[str, tuple[float, float]] = {
    "connect_timeout_seconds": (0.1, 120.0),
    "read_timeout_seconds": (0.1, 3600.0),
}
OBJECT_FLAGS = ("auto_provision", "managed")


@dataclass(frozen=True)
class OptionRules:
    """Which binding options a backend takes: option -> accepted range, flags, and free-form
    options with their own check (None = fine, else what is wrong)."""

    backend: str
    ints: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    floats: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    others: Mapping[str, Callable[[str], str | None]] = field(default_factory=dict)

    def violations(self, options: Mapping[str, str], prefix: str) -> Violations:
        out: Violations = []
        for name, value in options.items():
            problem = self._problem(name, value)
            if problem is not None:
                out.append((f"{prefix}.options[{name}]", problem))
        return out

    def _problem(self, name: str, value: str) -> str | None:
        if name in self.ints:
            low, high = self.ints[name]
            if not value.isdigit() or not low <= int(value) <= high:
                return f"must be an integer in [{low}, {high}]"
        elif name in self.floats:
            lowf, highf = self.floats[name]
            try:
                ok = lowf <= float(value) <= highf
            except ValueError:
                ok = False
            if not ok:
                return f"must be a number in [{lowf}, {highf}]"
        elif name in self.flags:
            if value.lower() not in ("true", "false"):
                return "must be true or false"
        elif name in self.others:
            return self.others[name](value)
        else:
            return f"unknown option for the {self.backend} backend"
        return None


@dataclass(frozen=True)
class ObjectBindingRules:
    """What an object backend accepts without its secret: the bucket (container) name, an
    http(s) endpoint and its options."""

    bucket_ok: Callable[[str], bool]
    bad_bucket: str
    bad_endpoint: str
    options: OptionRules

    def violations(self, binding: tenant_pb2.ObjectStoreBinding, prefix: str) -> Violations:
        out: Violations = []
        if binding.bucket and not self.bucket_ok(binding.bucket):
            out.append((f"{prefix}.bucket", self.bad_bucket))
        if binding.endpoint and not re.match(r"^https?://[^/\s]+", binding.endpoint):
            out.append((f"{prefix}.endpoint", self.bad_endpoint))
        out.extend(self.options.violations(binding.options, prefix))
        return out


def raise_if_misconfigured(problems: Violations, describe: str, *, binding: str, backend: str) -> None:
    """FailedPrecondition BINDING_INVALID naming every problem of a stored binding (never a secret)."""
    if problems:
        raise FailedPrecondition(
            f"{describe} is misconfigured: " + "; ".join(f"{f}: {d}" for f, d in problems),
            reason="BINDING_INVALID",
            metadata={"binding": binding, "backend": backend},
        )
