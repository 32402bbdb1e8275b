"""The floor: a bare Flask app under the plugin's own gunicorn settings.

It returns ``{"Err": ""}`` to every POST and does nothing else, so the
plugin's latency divided by the floor's is the cost of the plugin's own
work. It subclasses the plugin's server class, so both run with the same
gunicorn settings: one worker process, gthread, the same thread count.

Run it as ``python3 -m bench.floor SOCKET_PATH``.
"""

import os
import sys

from flask import Flask, Response

from plugin.api import CONTENT_TYPE
from plugin.server import PluginServer, configure_logging
from plugin.settings import Settings

REPLY = b'{"Err": ""}'


def create_floor_app():
    app = Flask("bench_floor")

    @app.route("/<endpoint>", methods=["POST"])
    def answer(endpoint):
        return Response(REPLY, mimetype=CONTENT_TYPE)

    return app


class FloorServer(PluginServer):
    def load(self):
        return create_floor_app()


def main(argv):
    socket_path = argv[1]
    threads = int(os.environ.get("THREADS", Settings.threads))
    settings = Settings(socket_path=socket_path, log_level="info", threads=threads)
    configure_logging(settings.python_log_level)
    if os.path.exists(socket_path):
        os.unlink(socket_path)
    FloorServer(settings).run()


if __name__ == "__main__":
    main(sys.argv)
