"""The API's request bodies: strict (unknown fields refused), bounded sizes."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Name = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]
Port = Annotated[int, Field(ge=1, le=65535)]
Address = Annotated[str, Field(max_length=64, pattern=r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$")]
Arg = Annotated[str, Field(max_length=4096)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Kind(StrEnum):
    namespaces = "namespaces"
    serviceaccounts = "serviceaccounts"
    deployments = "deployments"
    replicasets = "replicasets"
    services = "services"
    pods = "pods"


class DeploymentIn(Strict):
    namespace: Name
    name: Annotated[str, Field(min_length=1, max_length=47)]
    command: Annotated[list[Arg], Field(min_length=1, max_length=256)]
    port: Port
    env: Annotated[dict[Annotated[str, Field(min_length=1, max_length=256)], Arg],
                   Field(max_length=256)] = {}
    replicas: Annotated[int, Field(ge=0, le=100)] = 1
    service_port: Port | None = None
    service_account: Name = "default"
    #: None: the mesh's default (``shoal up --mtls``)
    mtls: Literal["strict", "permissive"] | None = None


class ScaleIn(Strict):
    replicas: Annotated[int, Field(ge=0, le=100)]


class PodReport(Strict):
    """What a supervisor knows about one of its pods."""

    replicaset: Annotated[str, Field(min_length=1, max_length=63)]
    status: Literal["Pending", "Running", "CrashLoopBackOff", "Terminating", "Unknown"]
    ready: bool = False
    restarts: Annotated[int, Field(ge=0)] = 0
    containers_ready: Annotated[int, Field(ge=0, le=2)] = 0
    app_port: Port | None = None
    inbound: Address | None = None
    outbound: Address | None = None
    admin: Address | None = None
    tap: Address | None = None


class TokenIn(Strict):
    namespace: Name
    pod: Annotated[str, Field(min_length=1, max_length=63)]


class CertifyIn(Strict):
    csr: Annotated[str, Field(min_length=1, max_length=65536)]
    token: Annotated[str, Field(min_length=1, max_length=256)]


class RotateIn(Strict):
    finish: bool = False
