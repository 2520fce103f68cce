"""Rate limits per API key (by scope) and per client address: 429 ``rate_limited`` with Retry-After.

A request is counted against one of four limits (settings ``rate_limit_<name>``, each a list such
as ``10/second;200/minute``, empty for none):

- ``admin`` for a key with the admin scope, on any route;
- ``enroll`` for another key on ``POST /enroll``;
- ``verify`` for another key on anything else: ``/verify`` and ``/identify`` share one count, so
  a door key cannot spread a bulk search over the two;
- ``address`` for a request without a valid key, counted per client address.

The counting (a moving window, exact at every instant) and its storage are the ``limits``
library's: in this process by default, in Redis for several replicas (every replica then counts
the same requests). The middleware sits inside ``auth_first``, which has already authenticated
the key of a photo route before its body is read; a keyed GET or DELETE is authenticated here,
with the same ``deps.authenticate``, and the route reuses that record. A refused request is
answered before its body is read (and then with ``Connection: close``, as ``auth_first`` does), so
it never reaches the body limit or the admission queue. ``/healthz`` is never limited: a liveness
probe refused would have the orchestrator restart a healthy process; nor are the console's page
and files (``/``, ``/static/``), which match no face and which a browser fetches in a burst.

The client address is the connection's peer, or, when that peer is a trusted proxy
(``trusted_proxies``), the last address in ``X-Forwarded-For`` that is not itself a trusted proxy:
the one the nearest proxy saw. Without trusted proxies the header is ignored (a client could
write anything there). If the storage fails (Redis unreachable) requests are let through and the
failure is logged: a limit protects the service, it must not keep doors shut.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import cast

from limits import RateLimitItem, parse_many
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.deps import AUTHENTICATED, authenticate
from service.api.problems import problem
from service.auth import KeyRecord
from service.errors import FaceGateError

log = logging.getLogger(__name__)

LIMITS = ("admin", "enroll", "verify", "address")
ROUTE_LIMITS = {"/enroll": "enroll"}  # a non-admin key's other requests count as "verify"
EXEMPT_PATHS = frozenset({"/healthz", "/"})  # liveness probes; the console's page
EXEMPT_PREFIXES = ("/static/",)  # the console's scripts, styles and icon: files, no face is matched
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_LOG_EVERY = 60.0  # seconds between two logs of a failing storage

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_limits(text: str) -> tuple[RateLimitItem, ...]:
    """``10/second;200/minute`` as limits items; empty: no limit. ValueError when malformed."""
    return tuple(parse_many(text)) if text.strip() else ()


def parse_networks(text: str) -> tuple[Network, ...]:
    """``172.16.0.0/12, 10.0.0.5`` as networks; ValueError when an entry is not an address."""
    return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in text.split(",") if p.strip())


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(text: str, trusted: Iterable[Network]) -> bool:
    address = _address(text)
    return address is not None and any(address in network for network in trusted)


def client_address(scope: Scope, trusted: tuple[Network, ...]) -> str:
    """The address a request is counted under (see the module's docstring)."""
    peer = str((scope.get("client") or ("unknown", 0))[0])
    if not trusted or not _trusted(peer, trusted):
        return peer
    hops = [h.strip() for v in Headers(scope=scope).getlist("x-forwarded-for") for h in v.split(",")]
    hops = [h for h in hops if h]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            address = _address(hop)
            return str(address) if address is not None else hop
    return hops[0] if hops else peer  # every hop is a trusted proxy: the first one sent it


def limit_name(key: KeyRecord, path: str) -> str:
    """Which of the key's limits a request on ``path`` counts against."""
    return "admin" if "admin" in key.scopes else ROUTE_LIMITS.get(path, "verify")


@dataclass(frozen=True)
class Refusal:
    limit: RateLimitItem
    retry_after: int


class Counters:
    """The limiter and its storage.

    In memory, one store counts for the whole process. A Redis client belongs to the event loop
    its connections were made in, so each loop gets its own client of the one shared server
    (a server runs one loop; a test client may run a loop per request).
    """

    def __init__(self, storage_uri: str) -> None:
        self.uri = storage_uri
        self._memory = storage_uri.startswith("memory://")
        self._shared = MovingWindowRateLimiter(self._storage())  # an unknown scheme fails here
        self._per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MovingWindowRateLimiter] = (
            weakref.WeakKeyDictionary()
        )
        self._logged = -math.inf

    def _storage(self) -> Storage:
        options: dict[str, str | bool] = (
            {}
            if self._memory
            else {"implementation": "redispy", "wrap_exceptions": True, "key_prefix": "facegate"}
        )
        return cast(Storage, storage_from_string("async+" + self.uri, **options))

    def limiter(self) -> MovingWindowRateLimiter:
        if self._memory:
            return self._shared
        loop = asyncio.get_running_loop()
        limiter = self._per_loop.get(loop)
        if limiter is None:
            limiter = self._per_loop[loop] = MovingWindowRateLimiter(self._storage())
        return limiter

    async def hit(self, limits: Iterable[RateLimitItem], *identifiers: str) -> Refusal | None:
        """Count one request against each limit in turn; the first one it is over refuses it."""
        limiter = self.limiter()
        try:
            for item in limits:
                if not await limiter.hit(item, *identifiers):
                    stats = await limiter.get_window_stats(item, *identifiers)
                    return Refusal(item, max(1, math.ceil(stats.reset_time - time.time())))
        except StorageError as exc:
            now = time.monotonic()
            if now - self._logged > _LOG_EVERY:
                self._logged = now
                log.error("rate limit storage %s failed, requests are not limited: %s", self.uri, exc)
        return None


class RateLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        limits: Mapping[str, str],
        storage: str = "memory://",
        trusted_proxies: str = "",
    ) -> None:
        unknown = set(limits) - set(LIMITS)
        if unknown:
            raise ValueError(f"unknown rate limits {sorted(unknown)}; valid: {', '.join(LIMITS)}")
        self.app = app
        self.limits = {name: parse_limits(limits.get(name, "")) for name in LIMITS}
        self.trusted = parse_networks(trusted_proxies)
        self.counters = Counters(storage)

    async def _key(self, scope: Scope) -> KeyRecord | None:
        """The request's valid key: the one ``auth_first`` checked, else the one its headers present."""
        key = scope.get(AUTHENTICATED)
        if key is not None:
            return key
        headers = Headers(scope=scope)
        state = getattr(getattr(scope.get("app"), "state", None), "facegate", None)
        if state is None or not ("authorization" in headers or "x-api-key" in headers):
            return None
        try:
            key = await run_in_threadpool(authenticate, state.keys, headers)
        except FaceGateError:  # the route answers 401 itself
            return None
        scope[AUTHENTICATED] = key
        return key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in EXEMPT_PATHS or path.startswith(EXEMPT_PREFIXES):
            await self.app(scope, receive, send)
            return
        key = await self._key(scope)
        if key is not None:
            name, per, identifiers = limit_name(key, path), "key", ("key", str(key.id))
        else:
            name, per, identifiers = "address", "address", ("address", client_address(scope, self.trusted))
        refusal = await self.counters.hit(self.limits[name], *identifiers, name)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        seconds = refusal.retry_after
        headers = {"Retry-After": str(seconds)}
        if scope["method"] in BODY_METHODS:
            headers["Connection"] = "close"  # the unread body is dropped with the connection
        limit = str(refusal.limit)
        response = problem(
            429,
            "rate_limited",
            "Too many requests",
            f"over the {name} limit of {limit} for this {per}; retry in {seconds} s",
            path,
            headers=headers,
            limit=limit,
            limit_name=name,
            per=per,
            retry_after_s=seconds,
        )
        await response(scope, receive, send)
