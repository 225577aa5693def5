"""gRPC modules of the demo, generated from ``protos/*.proto`` at first use.

Generated code is never committed: ``load("emoji")`` runs grpcio-tools once into
``$SHOAL_HOME/cache/grpc/<digest>/`` (the digest covers the protos and the grpcio-tools
version, so a change regenerates) and returns ``(emoji_pb2, emoji_pb2_grpc)``.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

PROTOS = Path(__file__).with_name("protos")


def _digest() -> str:
    from importlib.metadata import version

    h = hashlib.sha256(version("grpcio-tools").encode())
    for proto in sorted(PROTOS.glob("*.proto")):
        h.update(proto.name.encode() + b"\0" + proto.read_bytes())
    return h.hexdigest()[:16]


def generate(home: Path | None = None) -> Path:
    """The directory holding the generated modules, generating them when missing."""
    if home is None:
        home = Path(os.environ.get("SHOAL_HOME", "~/.shoal")).expanduser()
    out = home / "cache" / "grpc" / _digest()
    if out.is_dir():
        return out
    from grpc_tools import protoc

    out.parent.mkdir(parents=True, exist_ok=True)
    # generate beside, then rename: replicas starting together never see half a directory
    tmp = Path(tempfile.mkdtemp(prefix=".gen-", dir=out.parent))
    protos = [str(p) for p in sorted(PROTOS.glob("*.proto"))]
    rc = protoc.main(["protoc", f"-I{PROTOS}", f"--python_out={tmp}",
                      f"--grpc_python_out={tmp}", *protos])
    if rc != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"protoc failed ({rc}) on {PROTOS}")
    try:
        tmp.rename(out)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def load(name: str) -> tuple[ModuleType, ModuleType]:
    """``(NAME_pb2, NAME_pb2_grpc)`` for ``protos/NAME.proto``."""
    path = str(generate())
    if path not in sys.path:
        sys.path.insert(0, path)
    return (importlib.import_module(f"{name}_pb2"),
            importlib.import_module(f"{name}_pb2_grpc"))


def serve(add_servicer: object, servicer: object, port: int) -> None:
    """Run a demo gRPC service on 127.0.0.1:``port`` until the process is stopped."""
    from concurrent import futures

    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    add_servicer(servicer, server)  # type: ignore[operator]
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()
