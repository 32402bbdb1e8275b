"""The HTTP side of Docker's volume plugin protocol.

Docker POSTs JSON to ``/Plugin.Activate`` and ``/VolumeDriver.<Call>``
without a Content-Type header, sometimes with an empty body, and with
``"Opts": null`` when the user gave no option. Each route parses the raw
body, calls one driver method and returns JSON. Every failure, including a
malformed body, an unknown route and an unexpected exception, is returned
as ``{"Err": "<message>"}``.
"""

import json
import logging

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from .errors import BadRequest, PluginError, UnknownEndpoint

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json"


def _reply(payload, status=200):
    """Return ``payload`` as a JSON response; a str payload is JSON text already."""
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return Response(text, status=status, mimetype=CONTENT_TYPE)


def _body():
    """Return the request body as a dict; an empty body counts as ``{}``."""
    raw = request.get_data(cache=False)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as error:
        raise BadRequest(f"request body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def _name(body):
    name = body.get("Name")
    if name is None or name == "":
        raise BadRequest("missing 'Name' in the request")
    if not isinstance(name, str):
        raise BadRequest("'Name' must be a string")
    return name


def _opts(body):
    opts = body.get("Opts")
    if opts is None:
        return {}
    if not isinstance(opts, dict):
        raise BadRequest("'Opts' must be a JSON object of strings")
    return opts


def create_app(driver):
    """Return the Flask app that serves ``driver``."""
    app = Flask("docker_volume_ossfs")

    def activate(body):
        return {"Implements": ["VolumeDriver"]}

    def create(body):
        driver.create(_name(body), _opts(body))
        return {"Err": ""}

    def remove(body):
        driver.remove(_name(body))
        return {"Err": ""}

    def mount(body):
        return {"Mountpoint": driver.mount(_name(body), body.get("ID")), "Err": ""}

    def unmount(body):
        driver.unmount(_name(body), body.get("ID"))
        return {"Err": ""}

    def path(body):
        return {"Mountpoint": driver.path(_name(body)), "Err": ""}

    def get(body):
        return {"Volume": driver.get(_name(body)), "Err": ""}

    # The List reply, built and encoded once per change to the volumes. At
    # 1,000 volumes that work took over a third of each List call.
    listing = {"generation": None, "text": ""}

    def list_volumes(body):
        generation = driver.list_generation  # read before listing, so a change after it is not missed
        if listing["generation"] != generation:
            listing["text"] = json.dumps({"Volumes": driver.list(), "Err": ""})
            listing["generation"] = generation
        return listing["text"]

    def capabilities(body):
        return {"Capabilities": driver.capabilities()}

    handlers = {
        "Plugin.Activate": activate,
        "VolumeDriver.Create": create,
        "VolumeDriver.Remove": remove,
        "VolumeDriver.Mount": mount,
        "VolumeDriver.Unmount": unmount,
        "VolumeDriver.Path": path,
        "VolumeDriver.Get": get,
        "VolumeDriver.List": list_volumes,
        "VolumeDriver.Capabilities": capabilities,
    }

    @app.route("/<endpoint>", methods=["POST"])
    def dispatch(endpoint):
        handler = handlers.get(endpoint)
        if handler is None:
            raise UnknownEndpoint(f"unknown endpoint /{endpoint}: this plugin implements {', '.join(handlers)}")
        body = _body()
        # Names and IDs only: options may hold credentials.
        log.debug("%s name=%s id=%s", endpoint, body.get("Name"), body.get("ID"))
        return _reply(handler(body))

    @app.errorhandler(PluginError)
    def plugin_error(error):
        log.debug("%s failed: %s", request.path, error)
        return _reply({"Err": str(error)}, error.http_status)

    @app.errorhandler(HTTPException)
    def http_error(error):
        if error.code == 404:
            message = f"unknown endpoint {request.path}: this plugin implements {', '.join(handlers)}"
        elif error.code == 405:
            message = f"method {request.method} is not allowed on {request.path}; use POST"
        else:
            message = f"{error.name}: {error.description}"
        return _reply({"Err": message}, error.code)

    @app.errorhandler(Exception)
    def internal_error(error):
        log.exception("internal error in %s", request.path)
        return _reply({"Err": f"internal error in {request.path}: {type(error).__name__}: {error};"
                              " see the plugin log"}, 500)

    return app
