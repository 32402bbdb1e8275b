"""One HTTP client for every server under test: http.client over a unix socket.

Docker's plugin client keeps its connection open between calls, so each
thread keeps one keep-alive connection per socket. The timer covers sending
the request and reading the whole reply body. Decoding the JSON happens
after the clock stops, because it is the client's work.
"""

import http.client
import json
import threading
import time

from plugin.admin import UnixHTTPConnection

HEADERS = {"Accept": "application/vnd.docker.plugins.v1.2+json", "User-Agent": "Go-http-client/1.1"}


class CallFailed(Exception):
    pass


class Client:
    """Posts plugin calls to one unix socket; safe to share between threads."""

    def __init__(self, socket_path, timeout=60.0):
        self.socket_path = socket_path
        self.timeout = timeout
        self._local = threading.local()

    def _connection(self):
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = UnixHTTPConnection(self.socket_path, self.timeout)
            self._local.connection = connection
        return connection

    def close(self):
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def timed_post(self, endpoint, body=None):
        """POST ``body`` to ``/<endpoint>``; return (seconds, HTTP status, decoded reply).

        A connection that the server closed while idle is opened again once,
        outside the timed part.
        """
        data = b"{}" if body is None else json.dumps(body).encode()
        for attempt in (1, 2):
            connection = self._connection()
            try:
                if connection.sock is None:
                    connection.connect()
                started = time.perf_counter()
                connection.request("POST", "/" + endpoint, body=data, headers=HEADERS)
                response = connection.getresponse()
                payload = response.read()
                elapsed = time.perf_counter() - started
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                connection.close()
                if attempt == 2:
                    raise
                continue
            if response.getheader("Connection", "").lower() == "close":
                connection.close()
            return elapsed, response.status, json.loads(payload) if payload.strip() else {}

    def call(self, endpoint, **body):
        """POST ``/VolumeDriver.<endpoint>``; return (seconds, reply); raise CallFailed on an Err."""
        elapsed, status, reply = self.timed_post(f"VolumeDriver.{endpoint}", body)
        if status != 200 or reply.get("Err"):
            raise CallFailed(f"{endpoint} {body.get('Name', '')}: HTTP {status}: {reply.get('Err')}")
        return elapsed, reply
