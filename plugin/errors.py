"""Errors the plugin returns to Docker in the protocol's ``Err`` field.

Messages are the user interface: Docker prints them word for word after
``docker volume create``, ``docker run -v`` or ``docker volume rm``. Each
states what failed, on which value, and what to do next. None contains a secret.
"""


class PluginError(Exception):
    """Base class for every error that is sent back as ``{"Err": message}``."""

    http_status = 500

    def __init__(self, message):
        super().__init__(message)
        self.message = message

    def __str__(self):
        return self.message


class BadRequest(PluginError):
    """The request body is not a JSON object or lacks a required field."""

    http_status = 400


class UnknownEndpoint(PluginError):
    http_status = 404


class InvalidName(PluginError):
    """The volume name breaks the naming rule."""

    http_status = 400


class InvalidOption(PluginError):
    """A volume option is unknown, missing or has an invalid value."""

    http_status = 400


class VolumeNotFound(PluginError):
    http_status = 404

    def __init__(self, name):
        super().__init__(f"volume {name!r} not found")
        self.name = name


class VolumeConflict(PluginError):
    """A volume of that name exists with other options."""

    http_status = 409


class VolumeInUse(PluginError):
    http_status = 409


class MountFailed(PluginError):
    """ossfs failed, timed out, or exited without leaving a live mount."""


class UnmountFailed(PluginError):
    pass


class StateError(PluginError):
    """The state file could not be written, so a change was not saved."""
