"""Calibration, not part of cliproxy: lean.py's work on cliproxy's own I/O shell.

Strategy: ``lean.py --strict`` and cliproxy share the sans-IO HTTP/1.1 parser and writer;
they differ in two things at once, the I/O structure and the application's work. This
program takes one of them: it is cliproxy's server (``cliproxy.http.server``: a task per
request, the request cycle, flow control, timeouts) and client (``cliproxy.http.client``:
the keep-alive pool, a future per wait) running a handler that does only what
``lean.py`` does: check the client key against a set, read the body, one ``json.loads``
for the model, swap the credentials, send the request upstream and relay the answer
(whole when the first read brought all of it, as cliproxy does, else piece by piece from
an async generator). No route decision, body screens, failover plan, usage, metrics or
logging: cliproxy's application layer is what its own row adds to this one.

So, in one run: ``lean.py --strict`` -> ``shell.py`` is what the task-based I/O shell
costs over protocol callbacks; ``shell.py`` -> cliproxy is what the application layer
costs on that shell.

    python3 bench/bench.py --proxy bench/shell.py

Takes the bench's ``--config PATH`` as ``lean.py`` does (``port``, ``api-keys``,
``claude-api-key``, ``openai-compatibility``, ``ampcode.upstream-url``) and, like it, sends
every request to ``ampcode.upstream-url`` at the path of the provider entry serving the
model. Serves the same-protocol scenarios only: no translation.
"""

import asyncio
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cliproxy.http.client import HttpClient  # noqa: E402  (the source tree, not an install)
from cliproxy.http.headers import HOP_BY_HOP, Headers, strip_hop_by_hop  # noqa: E402
from cliproxy.http.server import Response, Server  # noqa: E402

from lean import ANTHROPIC_ROUTE, CREDENTIALS, client_key, model_routes, run_with_config  # noqa: E402

# Request fields not sent upstream: hop-by-hop, the client's credentials, and the framing
# and Host the client writes anew.
UNSENT = HOP_BY_HOP | CREDENTIALS | frozenset(("host", "content-length"))
NOT_RELAYED = HOP_BY_HOP | frozenset(("content-length",))
MAX_BODY = 2 * 1024 * 1024
_UNAUTHORIZED = Response(401, Headers.from_lowered([("content-type", "application/json")]),
                         b'{"type":"error","error":{"type":"authentication_error","message":"key"}}')


class Relay:
    """The handler: lean.py's work per request, on cliproxy's server and client."""

    def __init__(self, config):
        self.base = config["ampcode"]["upstream-url"].rstrip("/")
        self.client_keys = frozenset(config["api-keys"])
        self.key = config["claude-api-key"][0]["api-key"]
        self.routes = model_routes(config)
        self.client = HttpClient()

    async def __call__(self, request):
        fields = request.headers._items
        if client_key(dict(fields)) not in self.client_keys:
            return _UNAUTHORIZED
        body = await request.body.read(MAX_BODY)
        path, _ = self.routes.get(json.loads(body)["model"], ANTHROPIC_ROUTE)
        sent = [item for item in fields if item[0] not in UNSENT]
        sent.append(("x-api-key", self.key))
        upstream = await self.client.request("POST", self.base + path, Headers.from_lowered(sent), body)
        headers = strip_hop_by_hop(upstream.headers, NOT_RELAYED)
        first = await upstream.next_chunk()
        if upstream.complete:
            await upstream.aclose()
            return Response(upstream.status, headers, first or b"")
        return Response(upstream.status, headers, _relay(upstream, first))


async def _relay(upstream, chunk):
    try:
        while chunk is not None:
            yield chunk
            chunk = await upstream.next_chunk()
    finally:
        await upstream.aclose()


async def serve(config):
    server = Server(Relay(config))
    await server.start("127.0.0.1", config["port"])
    await asyncio.Event().wait()


def main(argv):
    run_with_config(serve, argv)


if __name__ == "__main__":
    main(sys.argv)
