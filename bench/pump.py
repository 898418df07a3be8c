"""Calibration floor, not part of cliproxy: a byte pump with no HTTP parsing at all.

Strategy: the "bare asyncio relay with no parsing" the issue's reference figures quote.
Each client connection gets its own upstream connection; bytes are copied both ways from
``asyncio.Protocol`` callbacks, with the one change the bench's requests need (the proxy
path is replaced by nginx's in the first read of each request). Nothing is parsed, so
it only works for the bench's non-pipelined requests. Run the bench against it with

    python3 bench/bench.py --proxy bench/pump.py

Its CPU per request is what the event loop and the four socket calls of a proxied request
cost on this machine: whatever cliproxy spends above it is its own work. Takes the
bench's ``--config PATH`` (``port`` and ``ampcode.upstream-url``) and ignores the rest.
"""

import asyncio
import sys
from urllib.parse import urlsplit

from lean import run_with_config  # bench/lean.py, next to this file: the common start

PROXY_PATH = b"/api/provider/anthropic/v1/messages"
UPSTREAM_PATH = b"/v1/messages"


class Upstream(asyncio.Protocol):
    """The upstream side: everything it sends goes to the client."""

    def __init__(self, client_transport):
        self.client = client_transport

    def data_received(self, data):
        self.client.write(data)

    def connection_lost(self, exc):
        self.client.close()


class Client(asyncio.Protocol):
    """The client side: bytes wait until the upstream connection is open."""

    def __init__(self, host, port):
        self.address = (host, port)
        self.upstream = None
        self.waiting = []

    def connection_made(self, transport):
        loop = asyncio.get_running_loop()
        opening = loop.create_task(loop.create_connection(lambda: Upstream(transport), *self.address))
        opening.add_done_callback(self.opened)

    def opened(self, opening):
        self.upstream = opening.result()[0]
        self.upstream.writelines(self.waiting)
        self.waiting = None

    def data_received(self, data):
        data = data.replace(PROXY_PATH, UPSTREAM_PATH, 1)
        if self.upstream is None:
            self.waiting.append(data)
        else:
            self.upstream.write(data)

    def connection_lost(self, exc):
        if self.upstream is not None:
            self.upstream.close()


async def serve(config):
    upstream = urlsplit(config["ampcode"]["upstream-url"])
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Client(upstream.hostname, upstream.port), "127.0.0.1", config["port"])
    async with server:
        await server.serve_forever()


def main(argv):
    run_with_config(serve, argv)


if __name__ == "__main__":
    main(sys.argv)
