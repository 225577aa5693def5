"""The $SHOAL_HOME layout and atomic writes.

    $SHOAL_HOME/
      control.json          address, url, pid and version of the running control plane
      token                 the operator token (0600); the CLI sends it as Bearer
      registry.json         namespaces, deployments, replica sets, pods, services
      identity/             anchors.json, issuer.pem, *.key (0600), tokens.json
      supervisors/NS/RS.json  spec and pid of the supervisor of one replica set
      logs/                 control.log, NS/POD.app.log, NS/POD.proxy.log, NS/RS.supervisor.log

Every file is written whole (tmp + fsync + rename, then fsync of the directory), so a
SIGKILL at any moment leaves either the old or the new content, never a mix.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import StateError


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically; the file gets ``mode``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise StateError(f"cannot write {path.name}: {e.strerror or e}") from e


def write_json(path: Path, value: Any, mode: int = 0o600) -> None:
    atomic_write(path, (json.dumps(value, indent=1, sort_keys=True) + "\n").encode(), mode)


def read_json(path: Path, default: Any = None) -> Any:
    """The parsed file, or ``default`` when it does not exist."""
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return default
    except (OSError, ValueError) as e:
        raise StateError(f"cannot read {path.name}: {e}") from e


@dataclass(frozen=True)
class Home:
    """Paths inside one $SHOAL_HOME. ``Home(Path("~/.shoal").expanduser()).ensure()``"""

    root: Path

    def ensure(self) -> Home:
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            for sub in ("identity", "supervisors", "logs"):
                (self.root / sub).mkdir(exist_ok=True, mode=0o700)
        except OSError as e:
            raise StateError(f"cannot create {self.root}: {e.strerror or e}") from e
        return self

    @property
    def control(self) -> Path:
        return self.root / "control.json"

    @property
    def token_file(self) -> Path:
        return self.root / "token"

    @property
    def registry(self) -> Path:
        return self.root / "registry.json"

    @property
    def identity(self) -> Path:
        return self.root / "identity"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def supervisors(self) -> Path:
        return self.root / "supervisors"

    def supervisor_file(self, namespace: str, replicaset: str) -> Path:
        return self.supervisors / namespace / f"{replicaset}.json"

    def pod_log(self, namespace: str, pod: str, container: str) -> Path:
        return self.logs / namespace / f"{pod}.{container}.log"

    def token(self) -> str:
        """The operator token, created on first use."""
        try:
            return self.token_file.read_text().strip()
        except FileNotFoundError:
            token = secrets.token_urlsafe(32)
            atomic_write(self.token_file, token.encode() + b"\n")
            return token
        except OSError as e:
            raise StateError(f"cannot read token: {e.strerror or e}") from e
