"""Tap across hosts: the control plane taps a proxy on another host over mTLS with its
own identity; that proxy's tap listener refuses everyone else but loopback.

The other host is a network namespace joined to this one by a veth pair
(10.124.N.0/24, made by the test, used by nothing else, removed afterwards with every
process inside). The control plane (`shoal up`) runs here on the veth address; the
workload (`shoal run --host 0.0.0.0 --advertise ...`) runs in the namespace, so its
one tap listener is reached from here as a remote peer and from inside as loopback.
The last test needs no namespace: 1000 tap subscriptions opened and closed on an
in-process proxy, over loopback and mTLS, leave nothing behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shoal.control import ca
from shoal.control.config import CONTROL_PLANE_IDENTITY, ControlConfig
from tests.support import SHOAL, delete_netns, metric, parse_metrics, wait_for

pytestmark = pytest.mark.timeout(240)

APP = r'''
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        b = b"ok " + self.path.encode() + b"\n"
        self.send_response(200); self.send_header("content-length", str(len(b)))
        self.end_headers(); self.wfile.write(b)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
'''

NS = "tapx"
POD_ID = f"default.{NS}.serviceaccount.identity.shoal.local"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


class OtherHost:
    """A network namespace at ``addr``, reached from here through a veth at ``local``."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        net = random.randint(1, 250)
        self.netns = f"shtap-{tag}"
        self.veth = f"shtap{tag}"
        self.local, self.addr = f"10.124.{net}.1", f"10.124.{net}.11"

    def up(self) -> None:
        ip("netns", "add", self.netns)
        ip("link", "add", self.veth, "type", "veth", "peer", "name", "eth0",
           "netns", self.netns)
        ip("addr", "add", f"{self.local}/24", "dev", self.veth)
        ip("link", "set", self.veth, "up")
        ip("-n", self.netns, "addr", "add", f"{self.addr}/24", "dev", "eth0")
        ip("-n", self.netns, "link", "set", "eth0", "up")
        ip("-n", self.netns, "link", "set", "lo", "up")

    def run(self, *cmd: str, env: dict[str, str] | None = None, check: bool = True,
            timeout: float = 150) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(["ip", "netns", "exec", self.netns, *cmd],
                           env={**os.environ, **(env or {})}, capture_output=True, text=True,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    def down(self) -> None:
        delete_netns(self.netns)
        # deleting the namespace deletes the pair; this is for a half-made setup
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True)


def shoal_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("SHOAL_API", "SHOAL_TOKEN") and not k.startswith("SHOAL_PROXY_")}
    return {**env, "SHOAL_HOME": str(home), **extra}


def shoal(home: Path, *args: str, **extra: str) -> str:
    r = subprocess.run([SHOAL, *args], env=shoal_env(home, **extra), capture_output=True,
                       text=True, timeout=150)
    assert r.returncode == 0, f"shoal {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    """(host, cp home, the pod as `shoal get pods` lists it, identity material dir)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to make a second host (network namespace)")
    tmp = tmp_path_factory.mktemp("tapmtls")
    host = OtherHost()
    try:
        host.up()
    except subprocess.CalledProcessError as e:
        host.down()
        pytest.skip(f"network namespaces unavailable here: {e.stderr!r}")
    cp, h1 = tmp / "cp", tmp / "h1"
    (tmp / "app.py").write_text(APP)
    try:
        url = shoal(cp, "up", "--api", f"{host.local}:0").split()[0]
        token = (cp / "token").read_text().strip()
        host.run(SHOAL, "run", "-n", NS, "--name", "echo", "--port", "8080",
                 "--host", "0.0.0.0", "--advertise", host.addr, "--",
                 sys.executable, str(tmp / "app.py"),
                 env=shoal_env(h1, SHOAL_API=url, SHOAL_TOKEN=token))
        (pod,) = json.loads(shoal(cp, "get", "pods", "-n", NS, "-o", "json"))
        yield host, cp, pod, tmp
    finally:
        host.run(SHOAL, "down", env=shoal_env(h1), check=False, timeout=60)
        subprocess.run([SHOAL, "down"], env=shoal_env(cp), capture_output=True, timeout=60)
        host.down()


# -- clients --------------------------------------------------------------------------

def mint(cp: Path, name: str, out: Path) -> tuple[str, str]:
    """A certificate for ``name`` from the control plane's CA: (cert file, key file)."""
    cfg = ControlConfig(home=cp)
    mesh_ca = ca.Authority.load_or_create(cp / "identity", cfg.anchor_lifetime,
                                          cfg.issuer_lifetime)
    return leaf(mesh_ca.issuer, mesh_ca.issuer_key, name, out)


def foreign(name: str, out: Path) -> tuple[str, str]:
    """A certificate for ``name`` from a CA the mesh has never heard of."""
    anchor, anchor_key = ca.new_anchor(3600, 1)
    issuer, issuer_key = ca.new_issuer(anchor, anchor_key, 3600)
    return leaf(issuer, issuer_key, name, out)


def leaf(issuer: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey, name: str,
         out: Path) -> tuple[str, str]:
    key = ca.new_key()
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
           .sign(key, hashes.SHA256()))
    cert = ca.sign_leaf(csr, name, issuer, issuer_key, 3600)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{name}-{uuid.uuid4().hex[:4]}"
    Path(f"{stem}.crt").write_text(ca.cert_pem(cert) + ca.cert_pem(issuer))
    Path(f"{stem}.key").write_bytes(ca.key_pem(key))
    os.chmod(f"{stem}.key", 0o600)
    return f"{stem}.crt", f"{stem}.key"


TAP_REQUEST = (b"POST /tap HTTP/1.1\r\nhost: tap\r\ncontent-type: application/json\r\n"
               b"content-length: 2\r\n\r\n{}")


def read_reply(sock: socket.socket, until: bytes = b"", limit: float = 5.0) -> bytes:
    """What the tap listener answers: a whole refusal, a stream up to ``until`` (a
    streamed tap never ends), or what came before it closed or stopped talking."""
    sock.settimeout(limit)
    data = b""
    try:
        while not (until and until in data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data and b"content-length" in data.lower():
                head, _, body = data.partition(b"\r\n\r\n")
                n = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(body) >= n:
                    break
    except TimeoutError:
        pass
    return data


def plaintext_tap(addr: tuple[str, int]) -> bytes:
    with socket.create_connection(addr, timeout=5) as s:
        s.sendall(TAP_REQUEST)
        return read_reply(s, b"started")


def tls_tap(addr: tuple[str, int], anchors: str, cert: tuple[str, str] | None) -> bytes:
    """A tap request over TLS that verifies the proxy as the pod's identity."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=anchors)
    if cert is not None:
        ctx.load_cert_chain(*cert)
    with socket.create_connection(addr, timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=POD_ID) as s:
        s.sendall(TAP_REQUEST)
        return read_reply(s, b"started")


def hostport(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host, int(port)


# -- the tests ---------------------------------------------------------------------------

def test_the_control_plane_taps_a_proxy_on_another_host_over_mtls(mesh):
    host, cp, pod, _ = mesh
    # registered where the control plane reaches it: the other host, not loopback
    assert pod["tap"].startswith(host.addr + ":") and pod["inbound"].startswith(host.addr)
    tap = subprocess.Popen([SHOAL, "tap", "deploy/echo", "-n", NS], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=shoal_env(cp))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(tap.stdout.readline, "")),
                              daemon=True)
    reader.start()
    try:
        def seen() -> bool:
            httpx.get(f"http://{pod['inbound']}/across-hosts", timeout=5, trust_env=False)
            return any(":path=/across-hosts" in ln for ln in lines)

        wait_for(seen, timeout=30, interval=0.5, what="the request in `shoal tap`")
        req = next(ln for ln in lines if ln.startswith("req ") and "/across-hosts" in ln)
        ident = req.split()[1]
        wait_for(lambda: any(ln.startswith(f"end {ident} ") for ln in lines), timeout=10,
                 what="its end event")
    finally:
        tap.send_signal(signal.SIGINT)
        _, err = tap.communicate(timeout=20)
    assert "Traceback" not in err and "shoal tap: pod" not in err, err
    assert "proxy=in " in req and ":method=GET" in req, req
    assert any(ln.startswith(f"rsp {ident} ") and ":status=200" in ln for ln in lines), lines
    # the stream came over mTLS with the control plane's identity: nothing was refused
    samples = admin_metrics(host, pod)
    assert metric(samples, "proxy_errors_total", direction="tap") == 0, samples


def test_the_tap_listener_refuses_everyone_else(mesh, tmp_path):
    host, cp, pod, _ = mesh
    addr = hostport(pod["tap"])
    anchors = str(cp / "identity" / "anchors.pem")
    before = admin_metrics(host, pod)

    # plaintext from another host
    reply = plaintext_tap(addr)
    assert reply.startswith(b"HTTP/1.1 403") and b"loopback" in reply, reply
    # TLS without a client certificate
    reply = tls_tap(addr, anchors, None)
    assert reply.startswith(b"HTTP/1.1 403") and b"client certificate" in reply, reply
    # TLS with a workload's certificate, from the mesh's own CA
    reply = tls_tap(addr, anchors, mint(cp, POD_ID, tmp_path))
    assert reply.startswith(b"HTTP/1.1 403") and POD_ID.encode() in reply, reply
    # TLS with the control plane's name, from another CA: the handshake fails
    try:
        reply = tls_tap(addr, anchors, foreign(CONTROL_PLANE_IDENTITY, tmp_path))
    except (ssl.SSLError, ConnectionError):
        reply = b""
    assert reply == b"", reply
    # ... and the control plane's identity from the mesh CA is served: the refusals
    # above are about who asked, not a broken TLS set-up
    reply = tls_tap(addr, anchors, mint(cp, CONTROL_PLANE_IDENTITY, tmp_path))
    assert reply.startswith(b"HTTP/1.1 200") and b'"started"' in reply, reply

    # loopback plaintext on the same listener still works, from inside the host
    port = addr[1]
    r = host.run("curl", "-sS", "-N", "--max-time", "2", "-XPOST", "-d", "{}",
                 f"http://127.0.0.1:{port}/tap", check=False)
    assert '"type": "started"' in r.stdout, (r.returncode, r.stdout, r.stderr)
    # and so does the data path
    got = httpx.get(f"http://{pod['inbound']}/still-fine", timeout=5, trust_env=False)
    assert got.status_code == 200 and got.text == "ok /still-fine\n"

    after = admin_metrics(host, pod)
    for error in ("plaintext_refused", "client_cert_missing", "client_identity_refused",
                  "tls_handshake_failed"):
        grew = metric(after, "proxy_errors_total", direction="tap", error=error) - \
            metric(before, "proxy_errors_total", direction="tap", error=error)
        assert grew == 1, (error, grew)
    log = proxy_log(mesh[3] / "h1")
    assert "direction=tap error=plaintext_refused" in log
    assert f"error=client_identity_refused peer={host.local} client_id={POD_ID}" in log


def admin_metrics(host: OtherHost, pod: dict):  # type: ignore[no-untyped-def]
    """The proxy's /metrics; its admin listener is on the other host's loopback."""
    r = host.run("curl", "-sS", "--max-time", "5", f"http://{pod['admin']}/metrics")
    return parse_metrics(r.stdout)


def proxy_log(home: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in home.rglob("*proxy*.log"))


# -- 1000 subscriptions, in process ----------------------------------------------------------

def test_a_thousand_tap_subscriptions_over_loopback_and_mtls_leave_nothing(tmp_path):
    """Open and close 1000 taps (every fourth over mTLS, with some refused callers
    between them) on an in-process proxy: no subscription, task or fd is left."""
    import uvloop

    from shoal.control.config import identity_name
    from shoal.control.identity import Identity as Issuer
    from shoal.control.plane_identity import PlaneIdentity
    from shoal.proxy.config import ProxyConfig
    from shoal.proxy.identity import Credentials, contexts, make_csr, tap_context
    from shoal.proxy.server import ProxyServer

    issuer = Issuer(ControlConfig(home=tmp_path))
    ident = identity_name("default", "leak")
    key, csr = make_csr(ident)
    answer = issuer.certify(csr, issuer.issue_token("leak", "default", "p-0"))
    material = (key, answer["certificate"], answer["chain"], answer["trust_anchors"])
    creds = Credentials(ident, *contexts(*material), answer["expiry"],
                        answer["renew_after"], tap_context(*material))
    control_ctx = PlaneIdentity(issuer).client_context()
    # a workload's client context: verifies the proxy, presents the wrong identity
    _, workload_ctx = contexts(*material)

    class Held:
        current = creds

    async def main() -> None:
        server = ProxyServer(ProxyConfig(outbound=None))
        await server.start()
        server.rt.identity = Held()  # type: ignore[assignment]
        host, port = hostport(server.addresses["tap"])

        async def cycle(ctx: ssl.SSLContext | None, expect: bytes) -> None:
            reader, writer = await asyncio.open_connection(
                host, port, ssl=ctx, server_hostname=ident if ctx else None)
            writer.write(TAP_REQUEST)
            data = b""
            while expect not in data:
                chunk = await asyncio.wait_for(reader.read(65536), 10)
                assert chunk, data
                data += chunk
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, ssl.SSLError):
                pass

        async def settle() -> None:
            for _ in range(500):
                if not server.rt.tap.subs and not server.tap.clients and \
                        not server.servers["tap"].pending:  # type: ignore[union-attr]
                    return
                await asyncio.sleep(0.01)
            raise AssertionError("tap connections not released")

        for i in range(20):  # warm-up: first-use allocations are not leaks
            await cycle(control_ctx if i % 2 else None, b'"started"')
        await settle()
        fds, tasks = len(os.listdir("/proc/self/fd")), len(asyncio.all_tasks())
        for i in range(1000):
            await cycle(control_ctx if i % 4 == 0 else None, b'"started"')
            if i % 20 == 0:  # refused callers among them
                await cycle(workload_ctx, b"403")
        await settle()
        assert server.rt.tap.subs == [] and not server.rt.tap.active
        assert len(asyncio.all_tasks()) == tasks, asyncio.all_tasks()
        assert len(os.listdir("/proc/self/fd")) <= fds
        refused = server.rt.metrics.errors[("tap", "client_identity_refused")]
        assert refused == 50
        server.shutdown()
        await server.drain()

    uvloop.run(main())
