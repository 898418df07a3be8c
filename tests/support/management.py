"""A harness for the management API's unit tests: real config files, the real loader,
writer and ``ConfigStore``; the request is a small stand-in with the attributes the API
reads (the HTTP layer is covered end to end in ``tests/test_e2e_management_api.py``)."""

import asyncio
import json

import pytest

from cliproxy.config.watcher import ConfigStore
from cliproxy.errors import PayloadTooLarge, ProxyError
from cliproxy.http.headers import Headers
from cliproxy.ops.management_api import ManagementApi

LOOPBACK = ("127.0.0.1", 40000)


class Body:
    def __init__(self, data):
        self.data = data

    async def read(self, limit):
        if len(self.data) > limit:
            raise PayloadTooLarge("body too large")
        return self.data


class Request:
    """The attributes of ``cliproxy.http.server.Request`` the management API reads."""

    def __init__(self, method, path, headers, peer, body, query=""):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.peer = peer
        self.body = Body(body)


def run(coro):
    return asyncio.run(coro)


class Harness:
    """One config file (or none), its store and the API; paths are relative to ``base``."""

    def __init__(self, path, config, environ=None, *, secret, base="/v0/management", **api_options):
        self.path = path
        self.secret = secret
        self.base = base
        self.store = ConfigStore(config)
        self.api = ManagementApi(environ=environ if environ is not None else {}, **api_options)

    def call(self, method, sub="", value=None, body=None, key=None, carrier="bearer", peer=LOOPBACK, query=""):
        """Send one request; ``value`` becomes ``{"value": value}`` unless ``body`` given;
        ``key`` defaults to the right secret (``""`` sends none)."""
        if body is None:
            body = b"" if value is None else json.dumps({"value": value}).encode()
        key = self.secret if key is None else key
        headers = Headers()
        if key:
            if carrier == "bearer":
                headers.add("Authorization", "Bearer " + key)
            else:
                headers.add("X-Management-Key", key)
        request = Request(method, self.base + sub, headers, peer, body, query)
        return run(self.api.handle(request, self.store.current, self.store))

    def ok(self, method, sub="", value=None, **kwargs):
        response = self.call(method, sub, value, **kwargs)
        assert response.status == 200
        assert response.headers.get("content-type") == "application/json"
        return json.loads(response.body.decode("utf-8"))

    def fails(self, status, method, sub="", value=None, **kwargs):
        with pytest.raises(ProxyError) as info:
            self.call(method, sub, value, **kwargs)
        assert info.value.status == status
        return info.value

    def file_bytes(self):
        with open(self.path, "rb") as handle:
            return handle.read()

    def file_json(self):
        return json.loads(self.file_bytes().decode("utf-8"))


def write_json(path, document):
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
