"""The one bridge from core events to Textual messages.

Everything the dashboard shows about the engine arrives here: one task reads the engine's
:class:`~castui_core.bus.EventBus` and posts a :class:`CoreEvent` per event to the app. High
rate events (``Event.coalesce``: encode progress, GPU samples, scan progress) become messages
that ``can_replace`` an older unprocessed one with the same key, so a busy or slow terminal
(SSH, tmux) handles the newest progress instead of working through a backlog.
"""

from __future__ import annotations

from textual.message import Message
from textual.message_pump import MessagePump

from castui_core.bus import EventBus, Subscription
from castui_core.events import Event


class CoreEvent(Message):
    """A core event, delivered to the app on its event loop."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event

    def can_replace(self, message: Message) -> bool:
        """True when ``message`` (the newer one) makes this one worthless."""
        return (
            self.event.coalesce
            and isinstance(message, CoreEvent)
            and message.event.coalesce
            and message.event.coalesce_key == self.event.coalesce_key
        )


class EventBridge:
    """Subscribes to a bus and forwards every event to ``target`` as a :class:`CoreEvent`."""

    def __init__(self, bus: EventBus, target: MessagePump) -> None:
        # Subscribe at construction: events published while the engine starts are kept.
        self._sub: Subscription = bus.subscribe()
        self._target = target

    async def run(self) -> None:
        """Forward until the bus or the subscription closes (run as an app worker)."""
        try:
            async for event in self._sub:
                self._target.post_message(CoreEvent(event))
        finally:
            self._sub.close()

    def close(self) -> None:
        self._sub.close()
