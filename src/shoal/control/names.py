"""Kubernetes-shaped names: DNS labels, pod-template-hash and pod suffixes."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Mapping, Sequence

from .errors import InvalidRequest

#: Kubernetes' alphabet for generated names: no vowels (no words), no 0/1/3 (l, o, e look-alikes).
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME = 47  # leaves room for "-<hash>-<suffix>" in a 63-character pod name


def check_name(value: str, what: str, limit: int = 63) -> str:
    """A DNS-1123 label, or InvalidRequest saying why not.

    >>> check_name("emojivoto", "namespace")
    'emojivoto'
    """
    if not value:
        raise InvalidRequest(f"{what} must not be empty")
    if len(value) > limit:
        raise InvalidRequest(f"{what} {value!r} is longer than {limit} characters")
    if not _LABEL.match(value):
        raise InvalidRequest(
            f"{what} {value!r} must be lowercase letters, digits and '-', "
            "starting and ending with a letter or digit")
    return value


def _encode(number: int, length: int) -> str:
    out = []
    for _ in range(length):
        number, digit = divmod(number, len(SAFE_ALPHABET))
        out.append(SAFE_ALPHABET[digit])
    return "".join(out)


def template_hash(command: Sequence[str], env: Mapping[str, str], port: int,
                  service_account: str = "default", mtls: str = "permissive") -> str:
    """A short stable hash of what makes a pod: same spec, same hash; any change, a new one.

    >>> template_hash(["python", "app.py"], {}, 8080) == template_hash(["python", "app.py"], {}, 8080)
    True
    """
    canonical = json.dumps({"command": list(command), "env": dict(sorted(env.items())),
                            "port": port, "serviceaccount": service_account, "mtls": mtls},
                           sort_keys=True, separators=(",", ":"))
    digest = int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:8], "big")
    return _encode(digest, 9)


def pod_suffix() -> str:
    """Five random characters, as Kubernetes appends to a replica set's pods."""
    return "".join(secrets.choice(SAFE_ALPHABET) for _ in range(5))


def pod_name(replicaset: str) -> str:
    return f"{replicaset}-{pod_suffix()}"


def parse_authority(authority: str) -> tuple[str, str, int] | None:
    """``emoji.emojivoto:8080`` -> ``("emoji", "emojivoto", 8080)``; None when not a service name.

    The Kubernetes suffixes ``.svc.cluster.local`` and ``.svc`` are accepted; no port means 80.
    """
    text = authority.strip().lower()
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, "80"
    if not port.isdigit() or not 0 < int(port) <= 65535:
        return None
    for suffix in (".svc.cluster.local", ".cluster.local", ".svc"):
        if host.endswith(suffix):
            host = host[: -len(suffix)]
            break
    parts = host.split(".")
    if len(parts) != 2 or not all(_LABEL.match(p) for p in parts):
        return None
    return parts[0], parts[1], int(port)
