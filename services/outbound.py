"""The one outbound HTTP client (imports, webhooks) and its network guard.

Every connection is checked against the address policy at the moment it is made: the guarded
resolver resolves the host, drops every address the policy denies, and the connection can only
go to what is left (so a DNS answer that changes between a check and the connection, a redirect,
or a token realm cannot reach inside). Literal IP addresses in URLs never reach a resolver, so
they are checked before each request. Redirects are followed by hand, each hop through the same
guard, without carrying credentials to another host.

By default only globally routable unicast addresses are reachable: loopback, link-local, private,
shared, multicast and reserved ranges are refused. The setting ``outbound_allowed_networks`` admits
networks (internal registries); ``outbound_denied_networks`` refuses more, and wins over the
allowlist, as the cloud metadata addresses always do.

aiohttp is imported when the first outbound request is made: a process that never makes one does
not carry it.
"""
import asyncio
import contextlib
import ipaddress
import socket
import ssl
from dataclasses import dataclass, field

MAX_REDIRECTS = 5
# Cloud metadata services: refused even when an allowed network holds them.
METADATA_ADDRESSES = ("169.254.169.254/32", "100.100.100.200/32", "fd00:ec2::254/128")


class OutboundRefused(Exception):
    """The destination is not one this registry may connect to; the message names it."""


def parse_networks(text):
    """Comma-separated CIDRs (a bare address is its own /32 or /128)."""
    networks = []
    for item in (part.strip() for part in (text or "").split(",")):
        if item:
            networks.append(ipaddress.ip_network(item, strict=False))
    return tuple(networks)


@dataclass(frozen=True)
class NetworkPolicy:
    allowed: tuple = ()
    denied: tuple = field(default_factory=lambda: parse_networks(",".join(METADATA_ADDRESSES)))

    @classmethod
    def from_settings(cls, config):
        return cls(parse_networks(config["outbound_allowed_networks"]),
                   parse_networks(",".join(METADATA_ADDRESSES + (config["outbound_denied_networks"],))))

    def admits(self, address):
        address = ipaddress.ip_address(address)
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if any(address in network for network in self.denied):
            return False
        if any(address in network for network in self.allowed):
            return True
        return address.is_global and not address.is_multicast

    def check(self, host, address):
        if not self.admits(address):
            raise OutboundRefused(f"{host} resolves to {address}, which this registry may not connect to "
                                  "(loopback, link-local, private and metadata addresses are refused unless "
                                  "outbound_allowed_networks admits them)")


def _literal_address(host):
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host.strip("[]"))
    return None


class GuardedResolver:
    """Resolves with ``inner`` (aiohttp's threaded resolver by default) and keeps only the addresses the
    policy admits; none left refuses the host. It is the connector's resolver (aiohttp's resolver interface)."""

    def __init__(self, policy, inner=None):
        if inner is None:
            from aiohttp.resolver import ThreadedResolver
            inner = ThreadedResolver()
        self.policy = policy
        self.inner = inner

    async def resolve(self, host, port=0, family=socket.AF_INET):
        results = await self.inner.resolve(host, port, family)
        admitted = [result for result in results if self.policy.admits(result["host"])]
        if not admitted:
            self.policy.check(host, results[0]["host"] if results else "nowhere")
        return admitted

    async def close(self):
        await self.inner.close()


class OutboundClient:
    """One aiohttp session per process, shared by every outbound caller; created on the running loop."""

    def __init__(self, policy, ca_bundle="", resolver=None):
        self.policy = policy
        self.verified = ssl.create_default_context()
        if ca_bundle:
            self.verified.load_verify_locations(ca_bundle)
        self.unverified = ssl.create_default_context()
        self.unverified.check_hostname = False
        self.unverified.verify_mode = ssl.CERT_NONE
        self.resolver = resolver
        self._session = None

    @property
    def session(self):
        if self._session is None:
            import aiohttp

            connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.policy, self.resolver),
                                             limit=100, ttl_dns_cache=None, use_dns_cache=False)
            # trust_env stays off: a proxy from the environment would connect on our behalf, past the guard.
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=False)
        return self._session

    def check_url(self, url):
        """Refuse a URL the guard would refuse, before any connection: literal addresses and odd schemes."""
        from yarl import URL

        url = URL(url)
        if url.scheme not in ("http", "https") or not url.host:
            raise OutboundRefused(f"{url} is not an http or https URL")
        literal = _literal_address(url.host)
        if literal is not None:
            self.policy.check(url.host, literal)
        return url

    async def check_host(self, host):
        """Resolve ``host`` (or take its literal address) and refuse it now when the guard would later."""
        literal = _literal_address(host)
        if literal is not None:
            self.policy.check(host, literal)
            return
        resolver = GuardedResolver(self.policy, self.resolver)
        try:
            await resolver.resolve(host, 0, socket.AF_UNSPEC)
        except OSError as exc:
            raise OutboundRefused(f"{host} cannot be resolved: {exc}") from None
        finally:
            if self.resolver is None:
                await resolver.close()

    @contextlib.asynccontextmanager
    async def request(self, method, url, headers=None, verify=True, follow_redirects=False, timeout=None, **kwargs):
        """An aiohttp response, following redirects (each hop guarded) when asked; the caller reads it inside.
        ``timeout``: seconds for the whole exchange (None: aiohttp's default)."""
        from yarl import URL

        if timeout is not None:
            import aiohttp
            timeout = aiohttp.ClientTimeout(total=timeout)
        headers = dict(headers or {})
        ssl_context = self.verified if verify else self.unverified
        for _ in range(MAX_REDIRECTS + 1):
            target = self.check_url(url)
            response = await self.session.request(method, target, headers=headers, ssl=ssl_context,
                                                  allow_redirects=False, timeout=timeout, **kwargs)
            if not (follow_redirects and response.status in (301, 302, 303, 307, 308)
                    and "Location" in response.headers):
                try:
                    yield response
                finally:
                    response.release()
                return
            response.release()
            url = target.join(URL(response.headers["Location"]))
            if url.host != target.host or url.port != target.port:
                # Credentials are for the registry, not for the storage it redirects to.
                headers.pop("Authorization", None)
            if response.status == 303:
                method = "GET"
        raise OutboundRefused(f"more than {MAX_REDIRECTS} redirects from {url}")

    async def close(self):
        if self._session is not None:
            await self._session.close()
            self._session = None


def is_network_error(exc):
    import aiohttp

    return isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError, OSError)) and not isinstance(
        exc, aiohttp.ClientResponseError)
