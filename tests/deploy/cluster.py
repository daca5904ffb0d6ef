"""Two ``dienhong serve`` processes on PostgreSQL and Redis, behind Debian's nginx running
``deploy/nginx/dienhong.conf`` (only its addresses, ports and paths replaced).

nginx runs as a child of the test (``daemon off``) with its own prefix, pid and logs under
the test's directory, on loopback ports, with a certificate made for the test.
"""

from __future__ import annotations

import asyncio
import datetime
import getpass
import ipaddress
import os
import re
import shutil
import signal
import ssl
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from server.app import create_app
from server.demo import DemoCity, seed_demo
from server.settings import Settings
from tests.conftest import DEMO_PASSWORD
from tests.harness import IN_CI, PG_URL, REDIS_URL, Templates, drop_database, fresh_database
from tests.server.test_nodes import Node, free_port, start_node, stop_node

ROOT = Path(__file__).resolve().parents[2]
NGINX_CONF = ROOT / "deploy" / "nginx" / "dienhong.conf"
NGINX_START_SECS = 20


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None
    )
    if found is None:
        if IN_CI:
            raise RuntimeError("nginx is not installed: .ci/run installs it")
        pytest.skip("nginx is not installed (apt-get install nginx; CI installs it)")
    return found


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, in place of the operator's."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "fullchain.pem", directory / "privkey.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"deploy/nginx/dienhong.conf no longer has {old!r} once"
    return text.replace(old, new)


def render_conf(
    node_ports: list[int],
    http_port: int,
    https_port: int,
    cert: Path,
    key: Path,
    cache: Path,
    files: Path,
) -> str:
    """The deploy configuration with only its addresses, ports and paths replaced."""
    text = NGINX_CONF.read_text()
    # Each node is listed in every upstream (the media one routes by meeting).
    for number, port in enumerate(node_ports, start=1):
        old = f"server 127.0.0.1:800{number} "
        assert text.count(old) >= 1, f"deploy/nginx/dienhong.conf no longer has {old!r}"
        text = text.replace(old, f"server 127.0.0.1:{port} ")
    text = replace_once(text, "listen 80;", f"listen 127.0.0.1:{http_port};")
    text = replace_once(text, "    listen [::]:80;\n", "")
    text = replace_once(text, "listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;")
    text = replace_once(text, "    listen [::]:443 ssl;\n", "")
    text = replace_once(text, "/etc/dienhong/tls/fullchain.pem", str(cert))
    text = replace_once(text, "/etc/dienhong/tls/privkey.pem", str(key))
    text = replace_once(text, "/var/lib/dienhong/files/renders/", f"{files / 'renders'}/")
    text = replace_once(text, "/var/lib/dienhong/files/", f"{files}/")
    return replace_once(text, "/var/cache/nginx/dienhong", str(cache))


def main_conf(prefix: Path, site: Path) -> str:
    """What Debian's /etc/nginx/nginx.conf gives the site, with every path in ``prefix``."""
    user = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""
    temps = "\n".join(
        f"    {kind}_temp_path {prefix / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}worker_processes 1;\npid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'} warn;\n"
        "events { worker_connections 1024; }\n"
        "http {\n    include /etc/nginx/mime.types;\n"
        "    default_type application/octet-stream;\n"
        f"    access_log {prefix / 'access.log'};\n{temps}\n"
        f"    include {site};\n}}\n"
    )


@dataclass
class Nginx:
    process: asyncio.subprocess.Process
    https_port: int
    http_port: int
    ca: ssl.SSLContext
    prefix: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def ws_url(self) -> str:
        return f"wss://127.0.0.1:{self.https_port}/ws"

    def http(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, verify=self.ca, headers=headers, timeout=30)

    def log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text()[-3000:] if path.exists() else ""


async def start_nginx(
    prefix: Path, node_ports: list[int], data_dir: Path, extra_locations: str = ""
) -> Nginx:
    """nginx on the deploy configuration; ``extra_locations`` (a benchmark's own) are
    added to the TLS server block, before its catch-all ``location /``."""
    binary = nginx_binary()
    prefix.mkdir(parents=True, exist_ok=True)
    cert, key = self_signed(prefix)
    http_port, https_port = free_port(), free_port()
    site = prefix / "dienhong.conf"
    text = render_conf(
        node_ports, http_port, https_port, cert, key, prefix / "cache", data_dir / "files"
    )
    if extra_locations:
        text = replace_once(text, "    location / {\n", extra_locations + "    location / {\n")
    site.write_text(text)
    conf = prefix / "nginx.conf"
    conf.write_text(main_conf(prefix, site))
    check = await asyncio.create_subprocess_exec(
        binary,
        "-t",
        "-q",
        "-e",
        str(prefix / "error.log"),
        "-p",
        str(prefix),
        "-c",
        str(conf),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await check.communicate()
    assert check.returncode == 0, f"nginx -t refused the configuration: {out.decode()}"
    process = await asyncio.create_subprocess_exec(
        binary,
        "-e",
        str(prefix / "error.log"),
        "-p",
        str(prefix),
        "-c",
        str(conf),
        "-g",
        "daemon off;",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    ca = ssl.create_default_context(cafile=str(cert))
    nginx = Nginx(process, https_port, http_port, ca, prefix)
    for _ in range(NGINX_START_SECS * 20):
        if process.returncode is not None:
            raise RuntimeError(f"nginx exited: {nginx.log()}")
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", https_port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return nginx
    raise RuntimeError(f"nginx did not start: {nginx.log()}")


async def stop_nginx(nginx: Nginx) -> None:
    if nginx.process.returncode is None:
        nginx.process.send_signal(signal.SIGQUIT)
        try:
            await asyncio.wait_for(nginx.process.wait(), 10)
        except TimeoutError:
            nginx.process.kill()
            await nginx.process.wait()


@dataclass
class Cluster:
    nodes: list[Node]
    nginx: Nginx
    city: DemoCity
    env: dict[str, str]
    tmp: Path
    logs: list[Path] = field(default_factory=list)

    def port_of(self, node: Node) -> int:
        return int(node.url.rsplit(":", 1)[1])


def node_env(data_dir: Path, url: str, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DIENHONG_")}
    env |= {
        "DIENHONG_DATA_DIR": str(data_dir),
        "DIENHONG_DATABASE_URL": url,
        "DIENHONG_REDIS_URL": REDIS_URL,
        "DIENHONG_REDIS_CHANNEL": f"dh:deploy:{uuid.uuid4()}",
        "DIENHONG_LOG_SWEEP_INTERVAL_SECS": "0.5",
        "DIENHONG_LOG_JSON": "false",
        "DIENHONG_LOG_LEVEL": "WARNING",
    }
    return env | extra


@asynccontextmanager
async def running_cluster(
    templates: Templates, tmp_path: Path, extra: dict[str, str]
) -> AsyncIterator[Cluster]:
    """Two nodes (with ``extra`` DIENHONG_* values) and nginx in front of them."""
    if not (PG_URL and REDIS_URL):
        pytest.skip(
            "nginx in front of two nodes needs PostgreSQL and Redis: set "
            "DIENHONG_TEST_DATABASE_URL and DIENHONG_TEST_REDIS_URL (CI does)"
        )
    nginx_binary()
    data_dir = tmp_path / "data"
    url = await fresh_database(templates, "postgresql", data_dir)
    env = node_env(data_dir, url, **extra)
    # The city (and the signing key in the shared data dir) before the nodes start.
    app = create_app(Settings.from_env(env), features=[])
    ctx = app.state.ctx
    try:
        city, _ = await seed_demo(ctx, password=DEMO_PASSWORD, communes=2, delegates=4)
    finally:
        await ctx.broker.stop()
        await ctx.db.dispose()
    nodes: list[Node] = []
    nginx: Nginx | None = None
    try:
        # Both at once: each spends seconds importing and migrating (nothing to migrate).
        started = await asyncio.gather(
            *(start_node(env, tmp_path / f"node-{name}.log") for name in ("a", "b")),
            return_exceptions=True,
        )
        nodes.extend(node for node in started if isinstance(node, Node))
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome
        ports = [int(node.url.rsplit(":", 1)[1]) for node in nodes]
        nginx = await start_nginx(tmp_path / "nginx", ports, data_dir)
        yield Cluster(nodes, nginx, city, env, tmp_path)
    finally:
        if nginx is not None:
            await stop_nginx(nginx)
        for node in nodes:
            await stop_node(node)
        await drop_database(url)


async def open_sockets(node: Node) -> float:
    """``dienhong_open_sockets`` of one node, asked directly (not through nginx)."""
    async with httpx.AsyncClient(base_url=node.url, timeout=10) as client:
        text = (await client.get("/metrics")).text
    match = re.search(r"^dienhong_open_sockets (\S+)$", text, re.MULTILINE)
    assert match, "no dienhong_open_sockets"
    return float(match.group(1))
