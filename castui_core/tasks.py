"""Stopping background tasks the one way castui's services stop them.

Why one helper: every service (senders, watchers, guardrail samplers) ends its loops with
"cancel, then wait for each to finish unwinding"; waiting matters, because a task that is
only cancelled can still be running its ``finally`` (closing a client, writing a row) when
the store or the loop goes away under it. Cancelling every task before waiting on any lets
them unwind together rather than one by one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel ``tasks`` (None: nothing to stop) and wait until each has finished.

    A task's own cancellation is expected and swallowed; any other error it ends with is
    raised, since it says the task failed while it was stopping.
    """
    running = [t for t in tasks if t is not None]
    for task in running:
        task.cancel()
    for task in running:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_set(event: asyncio.Event, seconds: float | None) -> None:
    """Wait until ``event`` is set or ``seconds`` have passed (``None``: no limit).

    The one shape of castui's "sleep, unless woken" (an idle poll, a retry delay, a stop's
    grace): ``asyncio.timeout``, not ``wait_for``, which on 3.11 can swallow a cancellation
    and make a stop hang.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


async def end_loop(task: asyncio.Task[Any] | None, wake: Callable[[bool], None]) -> None:
    """Stop a service's loop task and wait for it, even when a library swallowed the cancel.

    Why more than ``cancel()``: on Python 3.11, ``asyncio.wait_for`` (redis-py wraps every
    command in it) drops a cancellation that lands as the wrapped call completes, and the
    loop would then wait for its next poll, or for ever. ``wake(True)`` sets the loop's stop
    flag and wakes it, so it ends at its next turn; ``wake(False)`` clears the flag once the
    task has ended (the service may start again).
    """
    if task is None:
        return
    wake(True)
    task.cancel()
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        wake(False)
