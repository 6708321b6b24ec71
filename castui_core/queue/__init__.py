"""The job queue: one protocol (:class:`JobQueue`), pure policy, and its backends."""

from castui_core.queue.protocol import JobQueue

__all__ = ["JobQueue"]
