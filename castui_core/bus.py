"""A small async publish/subscribe bus for core events.

Publishing never blocks and never waits for a slow subscriber: each subscriber has its own
queue; coalescing events (``Event.coalesce``) replace an older unread event with the same key,
so a dashboard that falls behind sees the newest progress, not a backlog.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator
from itertools import count

from castui_core.events import Event


class Subscription:
    """One subscriber's view of the bus: iterate it to receive events in order."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._items: OrderedDict[object, Event] = OrderedDict()
        self._seq = count()
        self._wakeup = asyncio.Event()
        self._closed = False

    def _put(self, event: Event) -> None:
        if event.coalesce:
            key: object = ("coalesce", event.coalesce_key)
            self._items.pop(key, None)  # re-insert at the end: newest position
        else:
            key = ("seq", next(self._seq))
        self._items[key] = event
        self._wakeup.set()

    def get_nowait(self) -> Event | None:
        if not self._items:
            return None
        _, event = self._items.popitem(last=False)
        return event

    async def get(self) -> Event:
        while not self._items:
            if self._closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        _, event = self._items.popitem(last=False)
        return event

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()
        self._bus._subscribers.discard(self)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        return await self.get()


class EventBus:
    """Fan-out of events to every current subscriber."""

    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()

    def subscribe(self) -> Subscription:
        sub = Subscription(self)
        self._subscribers.add(sub)
        return sub

    def publish(self, event: Event) -> None:
        for sub in tuple(self._subscribers):
            sub._put(event)

    def close(self) -> None:
        """End every subscription (their iteration stops once drained)."""
        for sub in tuple(self._subscribers):
            sub.close()
