"""server.compat.aioice_addresses: the three aioice functions it wraps are still there with
the signatures it calls them with, and the wrappers apply only in a registered loop."""

from __future__ import annotations

import asyncio
import inspect

import aioice.ice
from aioice.candidate import Candidate

from server.compat.aioice_addresses import announce_addresses, forget_addresses


def test_the_wrapped_functions_keep_their_signatures() -> None:
    assert list(inspect.signature(aioice.ice.get_host_addresses).parameters) == [
        "use_ipv4",
        "use_ipv6",
    ]
    assert list(inspect.signature(aioice.ice.Connection.add_remote_candidate).parameters) == [
        "self",
        "remote_candidate",
    ]
    assert inspect.iscoroutinefunction(aioice.ice.Connection.add_remote_candidate)
    assert list(inspect.signature(aioice.ice.Connection.request_received).parameters) == [
        "self",
        "message",
        "addr",
        "protocol",
    ]
    assert "host" in inspect.signature(Candidate).parameters


async def test_announced_addresses_apply_in_their_loop_only() -> None:
    loop = asyncio.get_running_loop()
    announce_addresses(loop, ("127.0.0.1", "::1"), ("127.0.0.0/8",))
    try:
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1", "::1"]
        connection = aioice.ice.Connection(ice_controlling=True, use_ipv6=False)
        await connection.gather_candidates()
        assert {c.host for c in connection.local_candidates} == {"127.0.0.1"}
        # A remote candidate outside the peer networks is never added.
        outside = Candidate(
            foundation="1",
            component=1,
            transport="udp",
            priority=1,
            host="192.0.2.7",
            port=9,
            type="host",
        )
        inside = Candidate(
            foundation="2",
            component=1,
            transport="udp",
            priority=1,
            host="127.0.0.1",
            port=9,
            type="host",
        )
        await connection.add_remote_candidate(outside)
        await connection.add_remote_candidate(inside)
        assert [c.host for c in connection.remote_candidates] == ["127.0.0.1"]
        await connection.close()
    finally:
        forget_addresses(loop)
    # Elsewhere aioice chooses by itself again (it never offers loopback).
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)
