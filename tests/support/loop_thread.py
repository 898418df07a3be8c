"""A TCP server on 127.0.0.1 driven by its own asyncio event loop in a daemon thread, so
that synchronous code (a test, a bench tool) can start it, talk to it over real sockets
and stop it. The fake upstreams of the suite and of ``make hostile`` build on it."""

import asyncio
import threading

START_TIMEOUT = 5.0  # seconds for the listener to bind
STOP_TIMEOUT = 5.0  # seconds for close() to finish


class LoopThreadServer:
    """Subclasses define ``async handle(reader, writer)``, run once per accepted
    connection and responsible for closing its writer. ``close()`` cancels the handlers
    still running, so a connection held open by a hanging peer never outlives the server.
    ``stream_limit`` is the StreamReader buffer limit (asyncio's default unless raised)."""

    thread_name = "loop-thread-server"
    stream_limit = 64 * 1024

    def __init__(self):
        self.host = "127.0.0.1"
        self.port = None
        self._loop = None
        self._thread = None
        self._server = None
        self._tasks = set()

    @property
    def url(self):
        return "http://%s:%d" % (self.host, self.port)

    def start(self):
        """Bind 127.0.0.1:0 and serve from a background thread. Returns the server."""
        if self._loop is not None:
            raise RuntimeError("%s already started" % type(self).__name__)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=self.thread_name, daemon=True)
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(START_TIMEOUT)
        return self

    def close(self):
        """Stop listening, end every connection's handler and stop the thread. Idempotent."""
        loop = self._loop
        if loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(STOP_TIMEOUT)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(STOP_TIMEOUT)
            loop.close()
            self._loop = None
            self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.close()

    async def handle(self, reader, writer):
        raise NotImplementedError

    async def _listen(self):
        self._server = await asyncio.start_server(self._connection, self.host, 0, limit=self.stream_limit)
        return self._server.sockets[0].getsockname()[1]

    async def _connection(self, reader, writer):
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            await self.handle(reader, writer)
        finally:
            self._tasks.discard(task)

    async def _shutdown(self):
        self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()
