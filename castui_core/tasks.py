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
