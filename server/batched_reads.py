"""Reads asked at the same time, answered by one read.

A reconnect storm asks the same kind of read thousands of times within a few loop turns:
the user behind each token, the seqs of each socket's topics, each catch-up from the log.
``BatchedReads`` gathers every key asked in the same tick (or while a read is under way)
and answers all of them with one call of its read function, which gets the distinct keys
and returns a value for each. A read that fails fails every asker of that round; a later
ask starts a new round.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

Read = Callable[[Sequence[K]], Awaitable[Mapping[K, V]]]


class BatchedReads(Generic[K, V]):
    def __init__(self, read: Read[K, V]) -> None:
        self._read = read
        # Keys asked for the next round (a dict used as an ordered set), and who asked.
        self._keys: dict[K, None] = {}
        self._waiters: list[tuple[Sequence[K], asyncio.Future[dict[K, V]]]] = []
        self._reader: asyncio.Task[None] | None = None

    async def get(self, key: K) -> V:
        """The value of ``key``, read together with whatever else is asked meanwhile."""
        return (await self.get_many((key,)))[key]

    async def get_many(self, keys: Sequence[K]) -> dict[K, V]:
        """The values of ``keys``, read together with whatever else is asked meanwhile."""
        waiter: asyncio.Future[dict[K, V]] = asyncio.get_running_loop().create_future()
        self._keys.update(dict.fromkeys(keys))
        self._waiters.append((keys, waiter))
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_rounds())
        return await waiter

    async def _read_rounds(self) -> None:
        try:
            while self._waiters:
                keys, self._keys = list(self._keys), {}
                waiters, self._waiters = self._waiters, []
                try:
                    values = await self._read(keys)
                except Exception as exc:
                    for _, waiter in waiters:
                        if not waiter.done():
                            waiter.set_exception(exc)
                    continue
                except BaseException:
                    for _, waiter in waiters:
                        waiter.cancel()
                    raise
                for asked, waiter in waiters:
                    if waiter.done():
                        continue
                    try:
                        waiter.set_result({key: values[key] for key in asked})
                    except KeyError as exc:
                        waiter.set_exception(exc)
        finally:
            self._reader = None
            # Asked while the reader was being cancelled: nobody will answer them now.
            for _, waiter in self._waiters:
                waiter.cancel()
            self._waiters = []
            self._keys = {}
