"""The job queue: one protocol (:class:`JobQueue`), pure policy, and its backends."""

from castui_core.queue.protocol import JobQueue, NodeStatus

__all__ = ["JobQueue", "NodeStatus"]
