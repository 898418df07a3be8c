"""Flow control for one connection, in both directions: the part the server's and the
client's connections share.

Strategy: an ``asyncio.Protocol`` receives bytes whether or not anybody reads them, so
each connection counts what arrived since its consumer last ran dry and pauses the
transport's reading once that passes ``high_water`` (a slow reader holds back its peer
instead of filling memory); reading resumes when the consumer has taken everything it
was given (``ran_dry``). Writing is the transport's to pause: a writer whose transport
buffer is full waits for ``resume_writing``, for a bounded time. What a stalled peer
means (a log line and a cut, an upstream timeout) stays with each connection.
"""

import asyncio

__all__ = ["FlowControlled"]


class FlowControlled(asyncio.Protocol):
    """An ``asyncio.Protocol`` with read pausing past ``high_water`` unread bytes and a
    bounded wait for the transport to take writes again. Subclasses set ``transport``
    in ``connection_made``, set ``lost`` and call ``wake_drain`` in ``connection_lost``,
    and call ``count_unread`` for bytes nobody has asked for yet."""

    __slots__ = ("transport", "lost", "unread", "reading_paused", "writing_paused", "drain_waiter")

    high_water = 65536  # unread bytes past which reading pauses

    def __init__(self):
        self.transport = None  # type: asyncio.Transport
        self.lost = False
        self.unread = 0  # bytes received since the consumer last ran dry
        self.reading_paused = False
        self.writing_paused = False
        self.drain_waiter = None  # type: asyncio.Future

    def count_unread(self, size):
        """``size`` more bytes arrived that nobody has asked for: pause reading once
        more than ``high_water`` are waiting."""
        self.unread += size
        if self.unread > self.high_water and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def ran_dry(self):
        """The consumer has taken everything it was given: count afresh and read again."""
        self.unread = 0
        if self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()

    def pause_writing(self):
        self.writing_paused = True

    def resume_writing(self):
        self.writing_paused = False
        self.wake_drain()

    def wake_drain(self):
        """End a ``wait_writable`` under way (writing resumed, or the connection is gone)."""
        waiter = self.drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    async def wait_writable(self, timeout):
        """Wait while the transport has paused writing: True once it resumed or the
        connection was lost (the caller checks ``lost``), False when ``timeout`` seconds
        passed first (``None``: no limit)."""
        if not self.writing_paused or self.lost:
            return True
        loop = asyncio.get_running_loop()
        waiter = self.drain_waiter = loop.create_future()
        # Waits for a full socket buffer are rare: a timer of their own costs little and
        # leaves each connection's read deadline alone.
        timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
        try:
            return await waiter
        finally:
            self.drain_waiter = None
            if timer is not None:
                timer.cancel()


def _expire(waiter):
    if not waiter.done():
        waiter.set_result(False)
