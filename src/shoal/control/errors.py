"""One exception hierarchy for the control plane.

    ControlError               base; ``status`` is the HTTP status the API answers with
     ├── InvalidRequest        400: a value the control plane cannot use
     ├── Unauthorized          401: missing or wrong token
     ├── Forbidden             403: a valid token that may not do this
     ├── NotFound              404: no such resource
     ├── Conflict              409: the request contradicts the current state
     ├── PayloadTooLarge       413: request body over the cap
     └── StateError            500: $SHOAL_HOME cannot be read or written
"""

from __future__ import annotations


class ControlError(Exception):
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(ControlError):
    status = 400


class Unauthorized(ControlError):
    status = 401


class Forbidden(ControlError):
    status = 403


class NotFound(ControlError):
    status = 404


class Conflict(ControlError):
    status = 409


class PayloadTooLarge(ControlError):
    status = 413


class StateError(ControlError):
    status = 500
