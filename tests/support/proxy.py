"""Run the real cliproxy service in a background thread for end-to-end tests.

``RunningProxy`` writes the config document to a real file, starts ``cliproxy.service.
Service`` (the same wiring the command line uses) on 127.0.0.1 port 0 in its own event
loop thread, and offers small blocking helpers to talk to it with ``http.client``. The
environment is isolated: no ``AMP_API_KEY`` and no ``~/.local/share/amp/secrets.json``
leak in from the machine running the tests.
"""

import asyncio
import http.client
import json
import os
import threading

from cliproxy.amp.secrets import UpstreamKeys
from cliproxy.config.loader import load_file
from cliproxy.service import Service


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start=1000.0):
        self.now = start

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


class RunningProxy:
    def __init__(self, document, directory, *, clock=None, environ=None):
        self.directory = str(directory)
        self.path = os.path.join(self.directory, "config.json")
        document = dict(document)
        document.setdefault("host", "127.0.0.1")
        document.setdefault("port", 0)
        document.setdefault("logs-dir", os.path.join(self.directory, "logs"))
        document.setdefault("reload-interval", 3600)  # tests reload by hand with reload()
        self.write_config(document)
        self.clock = clock
        self.environ = environ if environ is not None else {}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.service = None
        self.port = None

    # -- lifecycle

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        self.thread.start()
        config, _ = load_file(self.path, environ=self.environ)
        options = {
            "upstream_keys": UpstreamKeys(
                environ=self.environ, secrets_path=os.path.join(self.directory, "no-secrets.json")
            )
        }
        kwargs = {"app_options": options}
        if self.clock is not None:
            kwargs["clock"] = self.clock
        self.service = Service(config, self.path, **kwargs)
        host, self.port = self.run(self.service.start())
        return self

    def stop(self):
        if self.service is not None:
            self.run(self.service.stop(), timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def run(self, coroutine, timeout=15):
        """Run ``coroutine`` on the proxy's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def call(self, function, *args):
        """Run a plain function on the proxy's loop thread (no locks in the request path)."""

        async def invoke():
            return function(*args)

        return self.run(invoke())

    # -- config

    def write_config(self, document):
        """Replace the config file atomically, as an editor's rename-save does."""
        temporary = self.path + ".tmp"
        with open(temporary, "w") as out:
            json.dump(document, out, indent=2)
        os.replace(temporary, self.path)

    def reload(self, document=None):
        """Write ``document`` (when given) and make the watcher look at once."""
        if document is not None:
            document = dict(document)
            document.setdefault("host", "127.0.0.1")
            document.setdefault("port", 0)
            document.setdefault("logs-dir", os.path.join(self.directory, "logs"))
            document.setdefault("reload-interval", 3600)
            self.write_config(document)
        return self.call(self.service.watcher.poll)

    @property
    def app(self):
        return self.service.app

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    # -- talking to it

    def connection(self, timeout=10):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=10):
        """(status, headers dict with lowercase names, body bytes)."""
        connection = self.connection(timeout)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode("utf-8")
                headers = dict(headers or {})
                headers.setdefault("Content-Type", "application/json")
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            data = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        finally:
            connection.close()

    def json(self, method, path, body=None, headers=None):
        status, response_headers, data = self.request(method, path, body, headers)
        return status, json.loads(data) if data else None
