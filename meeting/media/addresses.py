"""Which host addresses ICE offers: the ``media_addresses`` setting, per event loop.

aioice gathers a host candidate on every interface of the machine (and never on
127.0.0.1), and offers no parameter to choose. A council hall announces its LAN address
(like an SFU's announced address); tests and benchmarks announce loopback only, so that no
media is ever sent to another address of the machine.

This small adapter wraps ``aioice.ice.get_host_addresses`` once per process: inside an
event loop registered with ``announce_addresses`` the registered addresses are used;
in every other loop aioice behaves exactly as before. The media worker registers its own
loop from the setting; nothing else of aioice is touched.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable, Sequence

import aioice.ice

_lock = threading.Lock()
_announced: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[str, ...]] = (
    weakref.WeakKeyDictionary()
)
_original: Callable[[bool, bool], list[str]] | None = None


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    with _lock:
        chosen = _announced.get(loop) if loop is not None else None
    if chosen is None:
        assert _original is not None
        return _original(use_ipv4, use_ipv6)
    return [address for address in chosen
            if (":" in address and use_ipv6) or (":" not in address and use_ipv4)]


def _install() -> None:
    global _original
    with _lock:
        if _original is None:
            _original = aioice.ice.get_host_addresses
            aioice.ice.get_host_addresses = _host_addresses


def announce_addresses(loop: asyncio.AbstractEventLoop, addresses: Sequence[str]) -> None:
    """ICE connections created in ``loop`` offer exactly ``addresses`` as host candidates.

    An empty sequence keeps aioice's own choice (every interface) for that loop.
    """
    _install()
    with _lock:
        if addresses:
            _announced[loop] = tuple(addresses)
        else:
            _announced.pop(loop, None)


def forget_addresses(loop: asyncio.AbstractEventLoop) -> None:
    with _lock:
        _announced.pop(loop, None)
