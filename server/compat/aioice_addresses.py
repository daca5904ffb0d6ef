"""Which addresses ICE uses: ``media_addresses`` and ``media_peer_networks``, per loop.

aioice gathers a host candidate on every interface of the machine (and never on
127.0.0.1), and offers no parameter to choose. A council hall announces its LAN address
(like an SFU's announced address); tests and benchmarks announce loopback only, so that no
media is ever sent to another address of the machine.

A hall may also accept peers only from given networks (its LAN; 127.0.0.0/8 in tests):
then a connectivity check from any other address is ignored (never answered, never turned
into a peer-reflexive candidate) and remote candidates outside them are not tried, so no
packet goes to such an address.

This small adapter wraps three aioice functions once per process
(``get_host_addresses``, ``Connection.add_remote_candidate``,
``Connection.request_received``): inside an event loop registered with
``announce_addresses`` the registered choices apply; in every other loop aioice behaves
exactly as before. The media worker registers its own loop from the settings.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aioice.ice
from aioice.candidate import Candidate

log = logging.getLogger("dienhong.media.ice")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class IcePolicy:
    # Host candidate addresses; empty: aioice's own choice (every interface).
    addresses: tuple[str, ...] = ()
    # Networks peers may be reached at; empty: anywhere.
    peer_networks: tuple[Network, ...] = ()

    def allows(self, host: str) -> bool:
        if not self.peer_networks:
            return True
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False  # an unresolved (mDNS) name cannot be checked
        return any(ip in network for network in self.peer_networks)


_lock = threading.Lock()
_policies: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, IcePolicy] = (
    weakref.WeakKeyDictionary()
)
_originals: dict[str, Callable[..., Any]] = {}


def _policy() -> IcePolicy | None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    with _lock:
        return _policies.get(loop)


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    policy = _policy()
    if policy is None or not policy.addresses:
        return _originals["get_host_addresses"](use_ipv4, use_ipv6)  # type: ignore[no-any-return]
    return [
        address
        for address in policy.addresses
        if (":" in address and use_ipv6) or (":" not in address and use_ipv4)
    ]


async def _add_remote_candidate(
    self: aioice.ice.Connection, remote_candidate: Candidate | None
) -> None:
    policy = _policy()
    if (
        remote_candidate is not None
        and policy is not None
        and not policy.allows(remote_candidate.host)
    ):
        log.info("ignoring remote candidate %s outside the peer networks", remote_candidate.host)
        return
    await _originals["add_remote_candidate"](self, remote_candidate)


def _request_received(
    self: aioice.ice.Connection, message: Any, addr: tuple[str, int], protocol: Any
) -> None:
    policy = _policy()
    if policy is not None and not policy.allows(addr[0]):
        log.debug("ignoring a connectivity check from %s outside the peer networks", addr[0])
        return
    _originals["request_received"](self, message, addr, protocol)


def _install() -> None:
    with _lock:
        if _originals:
            return
        _originals["get_host_addresses"] = aioice.ice.get_host_addresses
        _originals["add_remote_candidate"] = aioice.ice.Connection.add_remote_candidate
        _originals["request_received"] = aioice.ice.Connection.request_received
        aioice.ice.get_host_addresses = _host_addresses
        aioice.ice.Connection.add_remote_candidate = _add_remote_candidate  # type: ignore[method-assign]
        aioice.ice.Connection.request_received = _request_received  # type: ignore[method-assign]


def announce_addresses(
    loop: asyncio.AbstractEventLoop, addresses: Sequence[str], peer_networks: Sequence[str] = ()
) -> None:
    """ICE connections created in ``loop`` offer exactly ``addresses`` as host candidates
    and talk only to peers in ``peer_networks`` (CIDR).

    Empty sequences keep aioice's own behaviour (every interface, any peer).
    """
    _install()
    policy = IcePolicy(
        tuple(addresses), tuple(ipaddress.ip_network(n, strict=False) for n in peer_networks)
    )
    with _lock:
        if policy.addresses or policy.peer_networks:
            _policies[loop] = policy
        else:
            _policies.pop(loop, None)


def forget_addresses(loop: asyncio.AbstractEventLoop) -> None:
    with _lock:
        _policies.pop(loop, None)
