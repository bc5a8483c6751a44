"""The SSRF guard on requests to tenant-supplied URLs (``mt_core.netguard``), with real sockets.

Every test that expects a refusal opens its own listener on a loopback address and checks that
it received no connection. No test sends a packet anywhere but loopback: addresses outside it are
only classified, never connected to, and a safety net below fails any connection attempt to
another address (or to a host name: the guard connects only to addresses it has checked).
"""

from __future__ import annotations

import datetime
import errno
import ipaddress
import json
import re
import socket
import ssl
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import API_KEY, make_settings

from mt_core import BlockedAddressError, LLMConfigError, MTCore, RunError, Settings, ValidationError
from mt_core.netguard import (
    NetworkPolicy, check_url, classify, embedded_ipv4, guarded_http_client, literal_address, parse_networks,
)
from mt_core.testing import FakeDNS, ScriptedLLMServer

# the guard sits between runs and the network: no part of it touches the database
pytestmark = pytest.mark.backends("sqlite")

VARIABLE = "MT_LLM_ALLOWED_NETWORKS"
ONE_STEP = ["<code>\nfinal_answer('pinned')\n</code>"]
REAL_GETADDRINFO = socket.getaddrinfo
REAL_CREATE_CONNECTION = socket.create_connection


# -- helpers ---------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


@pytest.fixture(autouse=True)
def only_loopback_connections(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Safety net: a connection to anything but a loopback *address* fails instead of leaving the host."""
    attempts: list[Any] = []

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        if not _is_loopback(str(address[0])):
            attempts.append(address)
            raise OSError(errno.ENETUNREACH, f"test safety net: no connection to {address[0]!r}")
        return REAL_CREATE_CONNECTION(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    yield attempts
    assert attempts == [], f"something tried to connect outside loopback, or to an unresolved name: {attempts}"


class Listener:
    """A TCP socket listening on a loopback address that never accepts: every connection made to
    it waits in the backlog, where :meth:`connections` counts it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.sock.setblocking(False)
        self.host, self.port = host, self.sock.getsockname()[1]

    def connections(self) -> int:
        """How many connections arrived (accepted and closed here)."""
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listeners() -> Iterator[Callable[..., Listener]]:
    opened: list[Listener] = []

    def open_(host: str = "127.0.0.1", port: int = 0) -> Listener:
        listener = Listener(host, port)
        opened.append(listener)
        return listener

    yield open_
    for listener in opened:
        listener.close()


def _loopback_pair(open_: Callable[..., Listener]) -> tuple[Listener, Listener | None]:
    """Listeners on 127.0.0.1 and [::1] with one port (the second is None without IPv6)."""
    for _ in range(20):
        v4 = open_("127.0.0.1")
        try:
            return v4, open_("::1", v4.port)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                continue
            return v4, None
    raise RuntimeError("no port free on both 127.0.0.1 and ::1")


@pytest.fixture
def make_core(tmp_path: Path) -> Iterator[Callable[..., MTCore]]:
    """Installations whose LLM requests may reach only ``allowed`` networks (default: public only)."""
    made: list[MTCore] = []

    def make(allowed: tuple[str, ...] = ()) -> MTCore:
        core = MTCore(settings=make_settings(tmp_path / f"home{len(made)}", llm_allowed_networks=allowed))
        made.append(core)
        return core

    yield make
    for core in made:
        core.close()


def _assert_names_the_refusal(message: str, address_class: str = "loopback") -> None:
    assert re.search(rf"\ban? {address_class} (\(carrier-grade NAT\) )?address", message), message
    assert VARIABLE in message
    assert API_KEY not in message


def _failed_run(acme: Any, llm_id: str, **kwargs: Any) -> tuple[RunError, dict[str, Any]]:
    with pytest.raises(RunError) as caught:
        acme.run_query([], llm_id, "Say hello.", use_docker=False, max_steps=2, **kwargs)
    run = acme.get_run(caught.value.run_id)
    assert run["status"] == "failed"
    assert run["error"] and API_KEY not in run["error"]
    return caught.value, run


# -- literal spellings: refused at add_llm ----------------------------------------------------

LOOPBACK_SPELLINGS = [
    "127.0.0.1", "127.1", "2130706433", "0x7f000001", "0X7F000001", "017700000001", "0177.0.0.1", "127.0.0.1.",
    "[::1]", "[::ffff:127.0.0.1]", "[0:0:0:0:0:ffff:7f00:1]", "[::ffff:7f00:1]", "[::127.0.0.1]",
    "[64:ff9b::7f00:1]", "[2002:7f00:1::]", "localhost", "LocalHost", "localhost.", "api.localhost",
]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_a_loopback_spelling_is_refused_at_add_llm_and_nothing_is_stored(make_core, listeners, host):
    v4, v6 = _loopback_pair(listeners)
    acme = make_core().tenant("acme")

    with pytest.raises(BlockedAddressError) as caught:
        acme.add_llm(base_url=f"http://{host}:{v4.port}/v1", api_key=API_KEY, model_name="m")

    assert isinstance(caught.value, LLMConfigError) and caught.value.field == "base_url"
    assert caught.value.address_class == "loopback"
    message = str(caught.value)
    assert message.startswith("base_url: host ")
    _assert_names_the_refusal(message)
    assert "127.0.0.0/8" in message or "::1/128" in message  # what to allow, if the operator means it
    assert acme.get_llms() == []
    assert v4.connections() == 0 and (v6 is None or v6.connections() == 0)


@pytest.mark.parametrize(("host", "address_class"), [
    ("169.254.169.254", "link-local"), ("[fe80::1]", "link-local"), ("10.0.0.1", "private"),
    ("172.16.0.1", "private"), ("192.168.1.1", "private"), ("[fd00::1]", "private"), ("100.64.0.1", "shared"),
    ("0.0.0.0", "unspecified"), ("0", "unspecified"), ("[::]", "unspecified"), ("224.0.0.1", "multicast"),
    ("[ff02::1]", "multicast"), ("240.0.0.1", "reserved"), ("[::ffff:169.254.169.254]", "link-local"),
])
def test_other_non_public_literals_are_refused_at_add_llm(make_core, host, address_class):
    acme = make_core().tenant("acme")
    with pytest.raises(BlockedAddressError) as caught:
        acme.add_llm(base_url=f"http://{host}:8000/v1", api_key=API_KEY, model_name="m")
    assert caught.value.address_class == address_class
    _assert_names_the_refusal(str(caught.value), address_class)
    assert acme.get_llms() == []


def test_add_llm_looks_up_no_name(make_core, monkeypatch):
    dns = FakeDNS({"llm.attacker.test": ["127.0.0.1"]})
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    acme = make_core().tenant("acme")
    acme.add_llm(base_url="https://llm.attacker.test/v1", api_key=API_KEY, model_name="m")
    assert dns.calls == Counter()


def test_allowed_networks_let_literals_through(make_core):
    acme = make_core(("127.0.0.0/8", "::1/128", "10.0.0.0/8")).tenant("acme")
    for index, host in enumerate(("127.1", "localhost", "[::1]", "[::ffff:127.0.0.1]", "10.1.2.3")):
        acme.add_llm(base_url=f"http://{host}:8000/v1", api_key=API_KEY, model_name="m", llm_name=f"llm-{index}")
    with pytest.raises(BlockedAddressError, match="link-local"):
        acme.add_llm(base_url="http://169.254.169.254/v1", api_key=API_KEY, model_name="m")


# -- names: resolved and refused when the request connects ------------------------------------


@pytest.mark.parametrize("answer", [["127.0.0.1"], ["::1"], ["::ffff:127.0.0.1"], ["127.0.0.2", "127.0.0.1"]])
def test_a_name_resolving_to_loopback_is_refused_at_run_time(make_core, listeners, monkeypatch, answer):
    v4, v6 = _loopback_pair(listeners)
    other = listeners("127.0.0.2", v4.port)
    if ":" in answer[0] and v6 is None:
        pytest.skip("no IPv6 loopback")
    dns = FakeDNS({"llm.attacker.test": answer})
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    # only 127.0.0.2 is allowed: an answer that mixes it with a refused address is refused whole
    acme = make_core(("127.0.0.2/32",)).tenant("acme")
    llm_id = acme.add_llm(base_url=f"http://llm.attacker.test:{v4.port}/v1", api_key=API_KEY, model_name="m")

    error, run = _failed_run(acme, llm_id)

    for text in (str(error), run["error"]):
        assert "host 'llm.attacker.test' resolves to" in text
        _assert_names_the_refusal(text)
    assert dns.calls["llm.attacker.test"] == 1  # refused once, not retried
    assert v4.connections() == 0 and other.connections() == 0 and (v6 is None or v6.connections() == 0)


def test_a_refusal_is_not_retried(make_core, listeners, monkeypatch):
    target = listeners()
    dns = FakeDNS({"llm.attacker.test": ["127.0.0.1"]})
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    acme = make_core().tenant("acme")
    llm_id = acme.add_llm(
        base_url=f"http://llm.attacker.test:{target.port}/v1", api_key=API_KEY, model_name="m", max_retries=5
    )
    _failed_run(acme, llm_id)
    assert dns.calls["llm.attacker.test"] == 1
    assert target.connections() == 0


class _Redirector(BaseHTTPRequestHandler):
    location = ""
    hits: list[str] = []

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).hits.append(self.path)
        self.send_response(307)
        self.send_header("Location", self.location)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.mark.parametrize("target_host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "llm.attacker.test"])
def test_a_redirect_to_a_refused_address_is_refused(make_core, listeners, monkeypatch, target_host):
    target = listeners("127.0.0.1")
    monkeypatch.setattr(socket, "getaddrinfo", FakeDNS({"llm.attacker.test": ["127.0.0.1"]}))
    handler = type("Redirector", (_Redirector,), {
        "location": f"http://{target_host}:{target.port}/v1/chat/completions", "hits": [],
    })
    server = ThreadingHTTPServer(("127.0.0.2", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        acme = make_core(("127.0.0.2/32",)).tenant("acme")
        llm_id = acme.add_llm(
            base_url=f"http://127.0.0.2:{server.server_address[1]}/v1", api_key=API_KEY, model_name="m", max_retries=0
        )
        error, run = _failed_run(acme, llm_id)
    finally:
        server.shutdown()
        server.server_close()
    assert handler.hits == ["/v1/chat/completions"]  # the allowed server was asked, and redirected
    _assert_names_the_refusal(str(error))
    assert "127.0.0.1" in run["error"]
    assert target.connections() == 0


def test_the_connection_goes_to_the_address_that_was_checked(make_core, listeners, monkeypatch):
    """DNS rebinding: the first answer is allowed, every later one is not; the request must
    arrive where the first answer pointed, and no second lookup may send it elsewhere."""
    server = ScriptedLLMServer(ONE_STEP, host="127.0.0.2")
    for _ in range(20):
        server.start()
        try:
            rebound = listeners("127.0.0.1", server.port)
            break
        except OSError:
            server.stop()
    else:
        pytest.fail("no port free on both 127.0.0.2 and 127.0.0.1")
    port = server.port
    dns = FakeDNS({"llm.rebind.test": lambda call: ["127.0.0.2"] if call == 1 else ["127.0.0.1"]})
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    try:
        acme = make_core(("127.0.0.2/32",)).tenant("acme")
        llm_id = acme.add_llm(base_url=f"http://llm.rebind.test:{port}/v1", api_key=API_KEY, model_name="m")
        result = acme.run_query([], llm_id, "Say pinned.", use_docker=False, max_steps=2)
    finally:
        server.stop()
    assert str(result) == "pinned" and result.status == "succeeded"
    assert len(server.requests) == 1
    assert server.requests[0]["headers"]["host"] == f"llm.rebind.test:{port}"
    assert dns.calls["llm.rebind.test"] == 1
    assert rebound.connections() == 0


def test_proxy_variables_are_ignored(make_core, listeners, monkeypatch):
    proxy = listeners("127.0.0.1")
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with ScriptedLLMServer(ONE_STEP, host="127.0.0.2") as server:
        acme = make_core(("127.0.0.2/32",)).tenant("acme")
        llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
        assert str(acme.run_query([], llm_id, "Say pinned.", use_docker=False, max_steps=2)) == "pinned"
    assert proxy.connections() == 0


def test_the_scripted_llm_works_end_to_end_when_loopback_is_allowed(calculator_setup):
    acme, server, tool_id, llm_id = calculator_setup  # conftest allows 127.0.0.0/8
    result = acme.run_query([tool_id], llm_id, "What is 25 multiplied by 16?", use_docker=False)
    assert str(result) == "400"
    assert len(server.requests) == 2


# -- the client itself: literal spellings at connect time, TLS, check_url ----------------------


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_the_guarded_client_refuses_every_loopback_spelling_before_connecting(listeners, host):
    v4, v6 = _loopback_pair(listeners)
    import httpx2

    with guarded_http_client(NetworkPolicy(), timeout=5) as client:
        try:
            client.post(f"http://{host}:{v4.port}/v1/chat/completions", json={})
        except BlockedAddressError as exc:
            _assert_names_the_refusal(str(exc))
        except httpx2.InvalidURL:  # httpx2 itself rejects a dotted quad with a leading zero
            assert host == "0177.0.0.1"
        else:
            pytest.fail("the request was sent")
    assert v4.connections() == 0 and (v6 is None or v6.connections() == 0)


def _certificate_for(name: str, directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))
    return cert_path, key_path


def test_tls_verifies_the_certificate_and_sends_sni_for_the_host_name(tmp_path, monkeypatch):
    cert, key = _certificate_for("llm.tls.test", tmp_path)
    seen_sni: list[str | None] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: seen_sni.append(name)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

        def do_GET(self) -> None:  # noqa: N802
            body = json.dumps({"ok": True}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.2", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    dns = FakeDNS({"llm.tls.test": ["127.0.0.2"], "other.tls.test": ["127.0.0.2"]})
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    policy = NetworkPolicy.from_strings(["127.0.0.2/32"])
    trust = ssl.create_default_context(cafile=str(cert))
    try:
        with guarded_http_client(policy, timeout=5, verify=trust) as client:
            assert client.get(f"https://llm.tls.test:{port}/").json() == {"ok": True}
        with guarded_http_client(policy, timeout=5, verify=trust) as client:
            with pytest.raises(Exception, match="(?i)certificate|hostname"):
                client.get(f"https://other.tls.test:{port}/")  # same address, a name the certificate is not for
    finally:
        server.shutdown()
        server.server_close()
    assert seen_sni[:2] == ["llm.tls.test", "other.tls.test"]


def test_check_url_resolves_and_checks_without_connecting(listeners, monkeypatch):
    target = listeners("127.0.0.1")
    monkeypatch.setattr(socket, "getaddrinfo", FakeDNS({"llm.attacker.test": ["8.8.8.8", "127.0.0.1"]}))
    with pytest.raises(BlockedAddressError, match="host 'llm.attacker.test' resolves to 127.0.0.1, a loopback"):
        check_url(f"http://llm.attacker.test:{target.port}/v1", NetworkPolicy())
    check_url(f"http://llm.attacker.test:{target.port}/v1", NetworkPolicy.from_strings(["127.0.0.1/32"]))
    check_url("https://8.8.8.8/v1", NetworkPolicy())
    assert target.connections() == 0


# -- classification ---------------------------------------------------------------------------

CLASSES = {
    "loopback": ["127.0.0.1", "127.255.255.254", "::1"],
    "private": ["10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1", "fc00::1", "fd12:3456::1", "fec0::1"],
    "link-local": ["169.254.169.254", "169.254.0.1", "fe80::1", "febf::1"],
    "unspecified": ["0.0.0.0", "0.1.2.3", "::"],
    "multicast": ["224.0.0.1", "239.255.255.250", "ff02::1", "ff0e::1"],
    "reserved": [
        "240.0.0.1", "255.255.255.255", "192.0.2.1", "198.18.0.1", "203.0.113.5", "192.0.0.8",
        "2001:db8::1", "100::1", "2001::1", "3fff::1", "4000::1", "e000::1",
    ],
    "shared": ["100.64.0.1", "100.127.255.254"],
}
EMBEDDED = {
    "::ffff:127.0.0.1": "loopback", "::ffff:7f00:1": "loopback", "::127.0.0.1": "loopback",
    "::ffff:0:7f00:1": "loopback", "64:ff9b::7f00:1": "loopback", "2002:7f00:1::": "loopback",
    "::ffff:10.0.0.1": "private", "::ffff:169.254.169.254": "link-local", "2002:a9fe:a9fe::1": "link-local",
    "64:ff9b::a9fe:a9fe": "link-local", "::ffff:100.64.0.1": "shared", "::ffff:224.0.0.1": "multicast",
    "::ffff:0.0.0.0": "unspecified", "::ffff:240.0.0.1": "reserved",
}
PUBLIC = [
    "8.8.8.8", "1.1.1.1", "93.184.216.34", "172.32.0.1", "100.128.0.1", "169.255.0.1", "2606:4700:4700::1111",
    "2001:4860:4860::8888", "::ffff:8.8.8.8", "2002:808:808::", "64:ff9b::808:808",
]


@pytest.mark.parametrize(("address", "expected"), [(a, c) for c, addresses in CLASSES.items() for a in addresses])
def test_classify_names_each_class(address, expected):
    assert classify(ipaddress.ip_address(address)) == expected


@pytest.mark.parametrize(("address", "expected"), EMBEDDED.items())
def test_ipv6_forms_are_judged_by_the_ipv4_address_they_embed(address, expected):
    parsed = ipaddress.ip_address(address)
    assert embedded_ipv4(parsed) is not None
    assert classify(parsed) == expected


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_not_refused(address):
    assert classify(ipaddress.ip_address(address)) is None
    assert NetworkPolicy().refusal(ipaddress.ip_address(address)) is None


def test_allowed_networks_exempt_their_addresses_and_embedded_forms():
    policy = NetworkPolicy.from_strings(["127.0.0.0/8", "fd00::/8"])
    allowed = ["127.0.0.1", "127.9.9.9", "::ffff:127.0.0.1", "64:ff9b::7f00:1", "fd00::5"]
    refused = {"::1": "loopback", "10.0.0.1": "private", "169.254.169.254": "link-local", "fc00::1": "private"}
    assert [policy.refusal(ipaddress.ip_address(a)) for a in allowed] == [None] * len(allowed)
    assert {a: policy.refusal(ipaddress.ip_address(a)) for a in refused} == refused


@pytest.mark.parametrize("spelling", [
    "127.0.0.1", "127.1", "2130706433", "0x7f000001", "017700000001", "0177.0.0.1", "127.0.0.1.", "[::ffff:127.0.0.1]",
])
def test_literal_address_reads_every_spelling_without_dns(spelling, monkeypatch):
    def no_dns(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0) -> Any:  # noqa: A002
        assert flags & socket.AI_NUMERICHOST, f"a DNS lookup of {host!r}"
        return REAL_GETADDRINFO(host, port, family, type, proto, flags)

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    address = literal_address(spelling)
    assert address is not None and classify(address) == "loopback"
    assert literal_address("llm.example.com") is None and literal_address("localhost") is None


def test_allowed_networks_setting(monkeypatch):
    assert Settings().llm_allowed_networks == ()
    monkeypatch.setenv(VARIABLE, " 127.0.0.1/32, 10.0.0.0/8 ,fd00::/8")
    assert Settings.from_env(dotenv=False).llm_allowed_networks == ("127.0.0.1/32", "10.0.0.0/8", "fd00::/8")
    monkeypatch.setenv(VARIABLE, "127.0.0.0/8,10.0.0.1/8")
    with pytest.raises(ValidationError) as caught:
        Settings.from_env(dotenv=False)
    assert caught.value.field == VARIABLE
    assert "'10.0.0.1/8'" in str(caught.value) and "did you mean 10.0.0.0/8?" in str(caught.value)
    with pytest.raises(ValidationError, match=rf"^{VARIABLE}: 'banana' is not a network"):
        Settings(llm_allowed_networks=("banana",))
    assert parse_networks(["::1"]) == (ipaddress.ip_network("::1/128"),)
