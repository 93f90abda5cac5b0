"""DNS, TLS and the Live endpoint reachable, each on its own, so a failure names its layer.

The target is where the client connects: `[live] endpoint` (e.g. the local emulator) or
Google's, trusted the way the client trusts it (`[live] ca_file`, else the system's CAs).
The endpoint check sends a plain HTTP request to the Live API's WebSocket path: any HTTP
answer means the service is there (it wants a WebSocket upgrade, so it says 4xx).
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from appliance.config import LiveConfig
from appliance.doctor.result import Result, failed, passed

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
"""The google-genai SDK's base URL for the Gemini Developer API."""
TIMEOUT_S = 5.0
CLOCK_HINT = "a wrong clock makes valid certificates look expired or not yet valid (see clock)"


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    port: int
    path: str
    ca_file: Path | None

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def target(cfg: LiveConfig) -> Target:
    url = urlsplit(cfg.endpoint or DEFAULT_BASE_URL)
    version = cfg.api_version or "v1beta"
    return Target(
        host=url.hostname or "",
        port=url.port or 443,
        path=f"/ws/google.ai.generativelanguage.{version}.GenerativeService.BidiGenerateContent",
        ca_file=cfg.ca_file,
    )


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_dns(t: Target, timeout_s: float = TIMEOUT_S) -> Result:
    if _is_address(t.host):
        return passed("dns", f"{t.host} is an address: nothing to look up")
    pool = concurrent.futures.ThreadPoolExecutor(1)
    future = pool.submit(socket.getaddrinfo, t.host, t.port, type=socket.SOCK_STREAM)
    pool.shutdown(wait=False)
    start = time.monotonic()
    try:
        infos = future.result(timeout=timeout_s)
    except concurrent.futures.TimeoutError:
        return failed(
            "dns",
            f"no answer for {t.host} within {timeout_s:g} s",
            "check the network and /etc/resolv.conf (`resolvectl status`)",
        )
    except socket.gaierror as exc:
        return failed(
            "dns",
            f"{t.host} does not resolve ({exc.strerror})",
            "check the network, /etc/resolv.conf, and [live] endpoint",
        )
    addresses = sorted({str(info[4][0]) for info in infos})
    took = (time.monotonic() - start) * 1000
    return passed("dns", f"{t.host} is {', '.join(addresses[:3])} ({took:.0f} ms)")


def _context(t: Target) -> ssl.SSLContext:
    if t.ca_file is not None:
        return ssl.create_default_context(cafile=str(t.ca_file))
    return ssl.create_default_context()


def _connect(t: Target, timeout_s: float) -> ssl.SSLSocket:
    raw = socket.create_connection((t.host, t.port), timeout=timeout_s)
    try:
        return _context(t).wrap_socket(raw, server_hostname=t.host)
    except BaseException:
        raw.close()
        raise


def check_tls(t: Target, timeout_s: float = TIMEOUT_S) -> Result:
    try:
        with _connect(t, timeout_s) as tls:
            cert = tls.getpeercert() or {}
            version = tls.version()
    except ssl.SSLCertVerificationError as exc:
        return failed(
            "tls",
            f"{t.where}: certificate not trusted ({exc.verify_message})",
            f"{CLOCK_HINT}; otherwise check [live] endpoint and ca_file",
        )
    except ssl.SSLError as exc:
        return failed(
            "tls",
            f"{t.where}: TLS handshake failed ({exc.reason or exc})",
            "a proxy or firewall may intercept TLS; check [live] endpoint",
        )
    except TimeoutError:
        return failed(
            "tls",
            f"{t.where}: no connection within {timeout_s:g} s",
            "check the network and firewall (outgoing TCP 443)",
        )
    except OSError as exc:
        return failed(
            "tls",
            f"{t.where}: cannot connect ({exc.strerror or exc})",
            "check the network, firewall and [live] endpoint",
        )
    until = cert.get("notAfter", "?")
    trust = f"CA {t.ca_file}" if t.ca_file else "the system's CAs"
    return passed("tls", f"{t.where}: {version}, certificate valid until {until} ({trust})")


def check_endpoint(t: Target, timeout_s: float = TIMEOUT_S) -> Result:
    request = (
        f"GET {t.path} HTTP/1.1\r\nHost: {t.host}\r\nUser-Agent: appliance-doctor\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    try:
        with _connect(t, timeout_s) as tls:
            tls.sendall(request)
            head = tls.recv(256).split(b"\r\n", 1)[0].decode("latin-1")
    except (OSError, ssl.SSLError) as exc:
        return failed(
            "endpoint",
            f"{t.where}: no HTTP answer ({exc})",
            "fix dns/tls first; check [live] endpoint",
        )
    if not head.startswith("HTTP/"):
        return failed(
            "endpoint", f"{t.where}: not an HTTP answer ({head[:60]!r})", "check [live] endpoint"
        )
    return passed(
        "endpoint",
        f"https://{t.where}{t.path.split('.GenerativeService')[0]}... "
        f"answers ({head.split(' ', 1)[-1]} without a WebSocket upgrade)",
    )
