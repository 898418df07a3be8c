"""Calibration baseline, not part of cliproxy: the floor of a Python asyncio relay.

Strategy: the least a Python proxy can do for the bench's requests on this machine: read
the head and the Content-Length body, look at the JSON body's model only to pick the
canned path, forward on one upstream connection per client connection, relay a
Content-Length answer. No header rewriting, no chunked framing, no error handling worth
the name. Run the bench against it with

    python3 bench/bench.py --proxy bench/relay.py

and compare its row with cliproxy's: the gap is what cliproxy's work costs, the rest is
the machine. Takes the bench's ``--config PATH`` (its ``port`` and ``ampcode.upstream-url``
are used) and ignores the other arguments.
"""

import asyncio
import json
import logging
import sys
from urllib.parse import urlsplit


async def read_head(reader):
    """(request or status line, {lower-case name: value}); raises IncompleteReadError at EOF."""
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    fields = {}
    for line in lines[1:]:
        if line:
            name, value = line.split(":", 1)
            fields[name.strip().lower()] = value.strip()
    return lines[0], fields


async def relay(client_reader, client_writer, upstream_host, upstream_port):
    upstream_reader = upstream_writer = None
    try:
        while True:
            try:
                line, fields = await read_head(client_reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            method, path, _ = line.split(" ", 2)
            body = await client_reader.readexactly(int(fields.get("content-length", "0")))
            if path.startswith("/api/provider/"):
                stream = "sse" in json.loads(body)["model"]
                path = "/sse/v1/messages" if stream else "/v1/messages"
            if upstream_writer is None:
                upstream_reader, upstream_writer = await asyncio.open_connection(
                    upstream_host, upstream_port)
            upstream_writer.write(("%s %s HTTP/1.1\r\nHost: upstream\r\nContent-Length: %d\r\n\r\n"
                                   % (method, path, len(body))).encode("latin-1") + body)
            status, answer = await read_head(upstream_reader)
            remaining = int(answer["content-length"])
            client_writer.write(("%s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n" % (
                status, answer.get("content-type", ""), remaining)).encode("latin-1"))
            while remaining:
                chunk = await upstream_reader.read(min(remaining, 65536))
                if not chunk:
                    return
                remaining -= len(chunk)
                client_writer.write(chunk)
                await client_writer.drain()
    except ConnectionError:
        return
    finally:
        client_writer.close()
        if upstream_writer is not None:
            upstream_writer.close()


async def serve(config):
    upstream = urlsplit(config["ampcode"]["upstream-url"])
    server = await asyncio.start_server(
        lambda r, w: relay(r, w, upstream.hostname, upstream.port),
        "127.0.0.1", config["port"])
    async with server:
        await server.serve_forever()


def main(argv):
    with open(argv[argv.index("--config") + 1], encoding="utf-8") as handle:
        config = json.load(handle)
    # Connections wrk leaves open at the end of a run are not worth a traceback.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    try:
        asyncio.run(serve(config))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main(sys.argv[1:])
