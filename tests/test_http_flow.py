"""Flow control shared by the server's and the client's connections (cliproxy.http.flow):
read pausing past the high water, and the bounded wait for the transport to take writes."""

import asyncio

from cliproxy.http.flow import FlowControlled


class RecordingTransport(asyncio.Transport):
    """A transport that only records what flow control asked of it."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def pause_reading(self):
        self.calls.append("pause")

    def resume_reading(self):
        self.calls.append("resume")


class Connection(FlowControlled):
    __slots__ = ()
    high_water = 10


def connected():
    conn = Connection()
    conn.transport = RecordingTransport()
    return conn


def test_reading_pauses_once_past_the_high_water_and_only_once():
    conn = connected()
    conn.count_unread(10)
    assert conn.transport.calls == [] and not conn.reading_paused
    conn.count_unread(1)
    conn.count_unread(50)
    assert conn.transport.calls == ["pause"] and conn.reading_paused and conn.unread == 61


def test_running_dry_counts_afresh_and_resumes_only_a_paused_transport():
    conn = connected()
    conn.count_unread(5)
    conn.ran_dry()
    assert conn.unread == 0 and conn.transport.calls == []
    conn.count_unread(11)
    conn.ran_dry()
    conn.ran_dry()
    assert conn.transport.calls == ["pause", "resume"] and not conn.reading_paused
    conn.count_unread(10)
    assert conn.transport.calls == ["pause", "resume"]


def test_wait_writable_returns_at_once_unless_writing_is_paused():
    async def scenario():
        conn = connected()
        assert await conn.wait_writable(0) is True
        conn.pause_writing()
        conn.lost = True
        assert await conn.wait_writable(0) is True

    asyncio.run(scenario())


def test_wait_writable_ends_when_writing_resumes_or_the_connection_goes():
    async def scenario(end):
        loop = asyncio.get_running_loop()
        conn = connected()
        conn.pause_writing()
        waiting = loop.create_task(conn.wait_writable(None))
        await asyncio.sleep(0)
        assert conn.drain_waiter is not None and not waiting.done()
        end(conn)
        assert await waiting is True
        assert conn.drain_waiter is None

    def resumed(conn):
        conn.resume_writing()
        assert not conn.writing_paused

    def lost(conn):
        conn.lost = True
        conn.wake_drain()

    asyncio.run(scenario(resumed))
    asyncio.run(scenario(lost))


def test_wait_writable_gives_up_after_its_timeout():
    async def scenario():
        conn = connected()
        conn.pause_writing()
        assert await conn.wait_writable(0) is False
        assert conn.drain_waiter is None and conn.writing_paused

    asyncio.run(scenario())
