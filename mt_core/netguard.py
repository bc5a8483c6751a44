"""The SSRF guard: which addresses a request to a tenant-supplied URL may connect to.

A tenant chooses its LLM configuration's ``base_url``. Unguarded, the service would POST wherever
it points (the host's loopback services, a Docker engine on 127.0.0.1:2375, the database, cloud
metadata at 169.254.169.254) and reflect the answer into the tenant's run record. Here:

- :class:`NetworkPolicy` holds the operator's exceptions (``MT_LLM_ALLOWED_NETWORKS``, CIDRs).
  By default only public addresses are reachable.
- :func:`classify` names the class of a non-public address: loopback, private, link-local,
  unspecified, multicast, reserved or shared (CGNAT). IPv6 forms that embed an IPv4 address
  (IPv4-mapped, IPv4-compatible, 6to4, NAT64) are judged by that IPv4 address.
- :func:`check_literal_url` refuses, without any DNS lookup, a URL whose host spells an address
  in any form the resolver accepts (``127.1``, ``2130706433``, ``0x7f000001``, ``0177.0.0.1``,
  ``[::ffff:127.0.0.1]``...) or is ``localhost`` / ``*.localhost``: the check of ``add_llm``.
- :func:`guarded_http_client` is an ``httpx2`` (or ``httpx``) client for
  ``openai.OpenAI(http_client=...)``. Each new connection, including each redirect hop's,
  resolves the host once with ``socket.getaddrinfo`` as the connection would, is refused if ANY
  returned address is refused (a DNS answer may mix public and private addresses), and then
  connects to the checked address itself: no second lookup, so DNS rebinding between check and
  connect is impossible. TLS still verifies the certificate for, and sends SNI with, the
  original host name. It ignores ``HTTP_PROXY``/``HTTPS_PROXY``: through a proxy, the proxy
  would resolve and connect, unchecked. Every request also ends by the deadline of the LLM
  attempt under way (:mod:`mt_core.deadline`), whatever timeout the client was built with.
- :func:`check_url` resolves and checks without connecting, for plugins whose HTTP stack cannot
  take a transport. It does not pin: a rebinding DNS server can still answer differently when
  that stack resolves again, and redirects are not checked.
"""

from __future__ import annotations

import functools
import importlib
import ipaddress
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from . import deadline
from .errors import BlockedAddressError, ValidationError

ALLOWED_NETWORKS_VARIABLE = "MT_LLM_ALLOWED_NETWORKS"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# socket.getaddrinfo's signature and result: [(family, type, proto, canonname, sockaddr), ...]
Resolver = Callable[..., list[tuple[Any, ...]]]

# Address classes, first match wins; an address in none of them (and, for IPv6, inside the global
# unicast range 2000::/3) is public.
_CLASSES: dict[int, tuple[tuple[str, tuple[str, ...]], ...]] = {
    4: (
        ("unspecified", ("0.0.0.0/8",)),  # "this network"; Linux connects 0.0.0.0 to the host itself
        ("loopback", ("127.0.0.0/8",)),
        ("private", ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")),
        ("shared", ("100.64.0.0/10",)),  # carrier-grade NAT
        ("link-local", ("169.254.0.0/16",)),  # includes cloud metadata, 169.254.169.254
        ("multicast", ("224.0.0.0/4",)),
        ("reserved", (
            "240.0.0.0/4", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "198.18.0.0/15",
            "198.51.100.0/24", "203.0.113.0/24",
        )),
    ),
    6: (
        ("unspecified", ("::/128",)),
        ("loopback", ("::1/128",)),
        ("private", ("fc00::/7", "fec0::/10", "64:ff9b:1::/48")),  # unique-local, site-local, local NAT64
        ("link-local", ("fe80::/10",)),
        ("multicast", ("ff00::/8",)),
        ("reserved", ("100::/64", "2001::/23", "2001:db8::/32", "3fff::/20", "5f00::/16")),
    ),
}
# Refusals of these classes suggest allowing the whole block; of the others, the one address.
_WHOLE_BLOCK_CLASSES = frozenset({"loopback", "private", "shared"})
_HTTPCORE = {"httpx2": "httpcore2", "httpx": "httpcore"}


@functools.lru_cache(maxsize=None)
def _network(text: str) -> IPNetwork:
    return ipaddress.ip_network(text)


def _inside(address: IPAddress, network: IPNetwork) -> bool:
    return address.version == network.version and address in network


def parse_networks(items: Iterable[str], variable: str = ALLOWED_NETWORKS_VARIABLE) -> tuple[IPNetwork, ...]:
    """The networks of a list of CIDR strings (``127.0.0.0/8``, ``fd00::/8``; a bare address is a /32 or /128).

    Raises :class:`~mt_core.errors.ValidationError` naming ``variable`` and the bad item.
    """
    networks = []
    for item in items:
        text = item.strip() if isinstance(item, str) else ""
        try:
            networks.append(ipaddress.ip_network(text))
        except ValueError as exc:
            hint = ""
            try:
                hint = f"; did you mean {ipaddress.ip_network(text, strict=False)}?"
            except ValueError:
                pass
            raise ValidationError(
                variable,
                f"{item!r} is not a network in CIDR notation such as 127.0.0.0/8, 10.0.0.0/8 or fd00::/8 ({exc}){hint}",
            ) from None
    return tuple(networks)


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address embeds and is delivered to, or None.

    IPv4-mapped ``::ffff:a.b.c.d`` and SIIT ``::ffff:0:a.b.c.d``, IPv4-compatible ``::a.b.c.d``,
    NAT64 ``64:ff9b::a.b.c.d`` and 6to4 ``2002:aabb:ccdd::/48``.
    """
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    value = int(address)
    if _inside(address, _network("::ffff:0:0:0/96")) or _inside(address, _network("64:ff9b::/96")):
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if _inside(address, _network("::/96")) and value > 1:  # :: and ::1 are themselves
        return ipaddress.IPv4Address(value)
    return None


def classify(address: IPAddress) -> str | None:
    """The class of a non-public address (``loopback``, ``private``, ``link-local``,
    ``unspecified``, ``multicast``, ``reserved``, ``shared``), or None for a public one."""
    embedded = embedded_ipv4(address)
    if embedded is not None:
        return classify(embedded)
    for name, networks in _CLASSES[address.version]:
        if any(_inside(address, _network(network)) for network in networks):
            return name
    if address.version == 6 and not _inside(address, _network("2000::/3")):
        return "reserved"  # outside global unicast: unassigned
    if not address.is_global:
        return "reserved"  # anything else Python's own special-purpose table knows
    return None


def _suggestion(address: IPAddress, kind: str) -> str:
    """A network that, allowed, would let ``address`` through (its block for loopback/private/shared)."""
    if kind in _WHOLE_BLOCK_CLASSES:
        for name, networks in _CLASSES[address.version]:
            for network in networks:
                if name == kind and _inside(address, _network(network)):
                    return network
    plain = ipaddress.ip_address(str(address).partition("%")[0])
    return f"{plain}/{plain.max_prefixlen}"


@dataclass(frozen=True)
class NetworkPolicy:
    """Where requests to tenant-supplied URLs may connect: public addresses, and ``allowed`` networks.

    Args:
        allowed: non-public networks the operator allows (e.g. a local Ollama's ``127.0.0.1/32``).
        variable: the setting that lists them, named in every refusal.
    """

    allowed: tuple[IPNetwork, ...] = ()
    variable: str = ALLOWED_NETWORKS_VARIABLE

    @classmethod
    def from_strings(cls, items: Iterable[str], variable: str = ALLOWED_NETWORKS_VARIABLE) -> NetworkPolicy:
        """A policy allowing the CIDRs in ``items`` (see :func:`parse_networks`)."""
        return cls(parse_networks(items, variable), variable)

    def refusal(self, address: IPAddress) -> str | None:
        """The class for which ``address`` is refused, or None when it may be reached.

        An address inside an allowed network may be reached, as may an IPv6 form whose embedded
        IPv4 address is inside one.
        """
        embedded = embedded_ipv4(address)
        for network in self.allowed:
            if _inside(address, network) or (embedded is not None and _inside(embedded, network)):
                return None
        return classify(address)

    def check(self, host: str, address: IPAddress, *, resolved: bool = True) -> None:
        """Raise :class:`~mt_core.errors.BlockedAddressError` when ``address``, which ``host``
        resolves to (or spells, ``resolved=False``), is refused."""
        kind = self.refusal(address)
        if kind is None:
            return
        embedded = embedded_ipv4(address)
        raise BlockedAddressError(
            host, str(address), kind, variable=self.variable, suggestion=_suggestion(embedded or address, kind),
            embedded=str(embedded) if embedded is not None else None, resolved=resolved,
        )


def _bare(host: str) -> str:
    """A host without IPv6 brackets."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def is_localhost_name(host: str) -> bool:
    """``localhost`` or a name under it (RFC 6761: always loopback), with or without a trailing dot."""
    name = _bare(host).lower()
    name = name[:-1] if name.endswith(".") else name
    return name == "localhost" or name.endswith(".localhost")


def literal_address(host: str) -> IPAddress | None:
    """The address a host spells without DNS, or None for a name.

    Every spelling the resolver reads as a number: ``127.1``, ``2130706433``, ``0x7f000001``,
    ``017700000001``, ``0177.0.0.1``, IPv6 with or without brackets, and any of them with one
    trailing dot. ``getaddrinfo`` with ``AI_NUMERICHOST`` never queries DNS.
    """
    name = _bare(host)
    name = name[:-1] if name.endswith(".") else name
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
    except (OSError, UnicodeError, ValueError):
        return None
    return ipaddress.ip_address(infos[0][4][0]) if infos else None


def check_literal_url(url: str, policy: NetworkPolicy) -> None:
    """Refuse ``url`` if its host needs no DNS to be judged refused: a literal address in any
    spelling, or ``localhost`` / ``*.localhost`` (judged as 127.0.0.1). Names are not looked up.

    Raises :class:`~mt_core.errors.BlockedAddressError`.
    """
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return
    if not host:
        return
    if is_localhost_name(host):
        policy.check(host, ipaddress.IPv4Address("127.0.0.1"))
        return
    address = literal_address(host)
    if address is not None:
        policy.check(host, address, resolved=False)


def resolve(host: str, port: int, policy: NetworkPolicy, *, resolver: Resolver | None = None) -> list[tuple[Any, ...]]:
    """Resolve ``host`` as a TCP connection would and check every address; return the
    ``getaddrinfo`` entries, all allowed.

    Raises :class:`~mt_core.errors.BlockedAddressError` if ANY address is refused, and ``OSError``
    when the host does not resolve. ``resolver`` replaces ``socket.getaddrinfo`` (for tests).
    """
    name = _bare(host)
    if is_localhost_name(name):
        policy.check(host, ipaddress.IPv4Address("127.0.0.1"))
    literal = literal_address(name)
    if literal is not None:  # judged as spelled, even where the resolver would not read it ("127.0.0.1.")
        policy.check(host, literal, resolved=False)
    infos = (resolver or socket.getaddrinfo)(name, port, 0, socket.SOCK_STREAM)
    for info in infos:
        policy.check(host, ipaddress.ip_address(info[4][0]), resolved=literal is None)
    return list(infos)


def check_url(url: str, policy: NetworkPolicy, *, resolver: Resolver | None = None) -> None:
    """Resolve the host of ``url`` and check every address, without connecting and without pinning.

    For plugins whose HTTP stack cannot take :func:`guarded_http_client`. Raises
    :class:`~mt_core.errors.BlockedAddressError`, ``OSError`` when the host does not resolve and
    ``ValueError`` for a URL without a host.
    """
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"{url!r} has no host")
    resolve(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), policy, resolver=resolver)


class GuardedBackend:
    """An httpcore network backend that checks every address before it connects, and connects to it.

    It resolves the host once (:func:`resolve`), then hands the *address* to the library's own
    synchronous backend, so no second lookup happens; httpcore passes the original host name to
    ``start_tls`` for SNI and certificate verification.

    Args:
        policy: where connections may go.
        httpcore: the httpcore module of the HTTP library (``httpcore2`` for httpx2, ``httpcore``).
        resolver: replaces ``socket.getaddrinfo`` (for tests).
    """

    def __init__(self, policy: NetworkPolicy, *, httpcore: ModuleType, resolver: Resolver | None = None) -> None:
        self.policy = policy
        self.resolver = resolver
        self._inner = httpcore.SyncBackend()
        self._connect_error = httpcore.ConnectError
        self._retryable = (httpcore.ConnectError, httpcore.ConnectTimeout)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> Any:
        """Connect to the first address of ``host`` that answers, after checking all of them."""
        try:
            infos = resolve(host, port, self.policy, resolver=self.resolver)
        except OSError as exc:  # does not resolve: the same error as an unguarded connection's
            raise self._connect_error(str(exc)) from exc
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        if not addresses:
            raise self._connect_error(f"{host!r} resolves to no address")
        failure: Exception | None = None
        for address in addresses:
            try:
                return self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except self._retryable as exc:
                failure = exc
        assert failure is not None
        raise failure

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
        """Refused: a tenant URL never names a Unix socket."""
        raise self._connect_error("the guarded client does not connect to Unix sockets")

    def sleep(self, seconds: float) -> None:
        """Wait between connection retries."""
        self._inner.sleep(seconds)


@functools.lru_cache(maxsize=None)
def _default_ssl_context(library: str) -> Any:
    """``library``'s default TLS context, made once per process and shared by every guarded client:
    making one reads the CA bundle (about 25 ms, half the CPU of a short run), and a context holds
    no per-connection or per-tenant state."""
    return importlib.import_module(library).create_ssl_context()


@functools.lru_cache(maxsize=None)
def _transport_class(library: str) -> type:
    """``library``'s ``HTTPTransport`` with its connection pool on a :class:`GuardedBackend`."""
    http = importlib.import_module(library)
    httpcore = importlib.import_module(_HTTPCORE[library])

    class DeadlineStream(http.SyncByteStream):  # type: ignore[misc, name-defined]
        """A response body that stops with a read timeout once the LLM call's deadline has passed."""

        def __init__(self, inner: Any, until: float) -> None:
            self.inner, self.until = inner, until

        def __iter__(self) -> Any:
            for chunk in self.inner:
                if time.monotonic() > self.until:
                    raise http.ReadTimeout("the LLM call's deadline passed while the response was being read")
                yield chunk

        def close(self) -> None:
            self.inner.close()

    class GuardedTransport(http.HTTPTransport):  # type: ignore[misc, name-defined]
        """A direct (never proxied) transport whose every connection goes through :class:`GuardedBackend`,
        and whose every request ends by the deadline of the LLM attempt under way (:mod:`mt_core.deadline`)."""

        def __init__(self, policy: NetworkPolicy, *, verify: Any = True, resolver: Resolver | None = None) -> None:
            # HTTPTransport.__init__ takes no network backend. This builds the pool it builds for a
            # direct connection (self._pool, which every HTTPTransport method uses) on the guarded one.
            self._pool = httpcore.ConnectionPool(
                ssl_context=_default_ssl_context(library) if verify is True else http.create_ssl_context(verify=verify),
                max_connections=100,
                max_keepalive_connections=20,
                keepalive_expiry=5.0,
                network_backend=GuardedBackend(policy, httpcore=httpcore, resolver=resolver),
            )

        def handle_request(self, request: Any) -> Any:
            deadline.clamp_timeouts(request.extensions)
            response = super().handle_request(request)
            left = deadline.remaining()
            if left is not None:
                response.stream = DeadlineStream(response.stream, time.monotonic() + left)
            return response

    return GuardedTransport


def guarded_http_client(
    policy: NetworkPolicy,
    timeout: float | Any,
    verify: Any = True,
    *,
    library: str = "httpx2",
    resolver: Resolver | None = None,
) -> Any:
    """An HTTP client that connects only where ``policy`` allows, pinned to the checked address.

    Suitable for ``openai.OpenAI(http_client=...)``: an ``httpx2.Client`` (``library="httpx"``: an
    ``httpx.Client``, for SDKs built on httpx) that follows redirects like the SDK's default
    client, each hop through the same check, and ignores proxy variables from the environment
    (``trust_env=False``): a proxy would resolve and connect on its own, unchecked.

    Args:
        policy: where connections may go.
        timeout: seconds (or the library's ``Timeout``) per request.
        verify: TLS verification: ``True`` (the library's default context, one per process), or an
            ``ssl.SSLContext``.
        library: ``httpx2`` or ``httpx``.
        resolver: replaces ``socket.getaddrinfo`` (for tests).

    A refused address raises :class:`~mt_core.errors.BlockedAddressError` from the request; it is
    not an httpx transport error, so the ``openai`` client neither retries nor wraps it.
    """
    if library not in _HTTPCORE:
        raise ValueError(f"library must be one of {', '.join(_HTTPCORE)}, got {library!r}")
    http = importlib.import_module(library)
    transport = _transport_class(library)(policy, verify=verify, resolver=resolver)
    return http.Client(transport=transport, timeout=timeout, follow_redirects=True, trust_env=False)
