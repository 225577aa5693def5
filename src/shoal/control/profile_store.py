"""Service profiles kept in $SHOAL_HOME/profiles and pushed to proxies through discovery.

One file per service (``profiles/NS/SVC.json``, the document as applied). A batch
of documents is validated whole before anything is written, so an invalid profile
leaves the profiles in force unchanged.

    store = ProfileStore(home / "profiles", plane.destination)   # loads and pushes
    store.apply([doc, ...])        # -> [{"namespace", "service", "name", "routes"}]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shoal.profiles import Profile, ProfileError, parse

from .destination import Destination
from .errors import InvalidRequest, NotFound, StateError
from .names import check_name
from .state import read_json, write_json


class InvalidProfile(InvalidRequest):
    """A profile document that fails validation; ``field`` names the bad field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid service profile: {field}: {reason}")
        self.field = field
        self.reason = reason


def summary(p: Profile) -> dict[str, Any]:
    return {"namespace": p.namespace, "service": p.service, "name": p.name,
            "routes": [r.name for r in p.routes]}


class ProfileStore:
    def __init__(self, root: Path, destination: Destination | None = None) -> None:
        self.root = root
        self.destination = destination
        self.profiles: dict[tuple[str, str], Profile] = {}
        for path in sorted(root.glob("*/*.json")):
            try:
                p = parse(read_json(path, {}))
            except (ProfileError, StateError):
                continue  # a damaged file is skipped, not fatal for the control plane
            self._use(p)

    def _use(self, p: Profile) -> None:
        self.profiles[(p.namespace, p.service)] = p
        if self.destination is not None:
            self.destination.set_profile(p.namespace, p.service, p.to_json())

    def validate(self, docs: Sequence[Any]) -> list[Profile]:
        """Every document parsed, or InvalidProfile naming the first bad field."""
        if not isinstance(docs, list | tuple) or not docs:
            raise InvalidProfile("documents", "expected one or more ServiceProfile documents")
        out = []
        for i, doc in enumerate(docs):
            where = f"document {i + 1}: " if len(docs) > 1 else ""
            try:
                p = parse(doc)
            except ProfileError as e:
                raise InvalidProfile(where + e.where, e.reason) from None
            for value, what in ((p.namespace, "namespace"), (p.service, "service")):
                try:
                    check_name(value, what)
                except InvalidRequest as e:
                    raise InvalidProfile(where + "metadata.name", e.message) from None
            out.append(p)
        return out

    def apply(self, docs: Sequence[Any]) -> list[dict[str, Any]]:
        profiles = self.validate(docs)
        for p in profiles:
            write_json(self.root / p.namespace / f"{p.service}.json", p.to_json(), 0o600)
        for p in profiles:
            self._use(p)
        return [summary(p) for p in profiles]

    def get(self, namespace: str, service: str) -> Profile:
        p = self.profiles.get((namespace, service))
        if p is None:
            raise NotFound(f"no service profile for {service}.{namespace}")
        return p

    def listing(self, namespace: str | None = None) -> list[dict[str, Any]]:
        return [summary(p) for (ns, _), p in sorted(self.profiles.items())
                if namespace is None or ns == namespace]

    def delete(self, namespace: str, service: str) -> dict[str, Any]:
        p = self.get(namespace, service)
        (self.root / namespace / f"{service}.json").unlink(missing_ok=True)
        del self.profiles[(namespace, service)]
        if self.destination is not None:
            self.destination.set_profile(namespace, service, None)
        return summary(p)
