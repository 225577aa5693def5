"""Success or failure of a response, as Linkerd classifies it.

A 5xx, a gRPC status of Unknown, DeadlineExceeded, Internal, Unavailable, DataLoss or
PermissionDenied (a gRPC response without trailers counts as Unknown), or a stream
that ended in error is a failure; everything else, 4xx included, is a success.
Service profiles' ``responseClasses`` override this per route (see shoal.profiles).
"""

from __future__ import annotations

from typing import Final

#: gRPC status codes that count as failures.
GRPC_FAILURES: Final = frozenset({2, 4, 7, 13, 14, 15})
GRPC_UNKNOWN: Final = 2

GRPC_NAMES = {
    0: "OK", 1: "Canceled", 2: "Unknown", 3: "InvalidArgument", 4: "DeadlineExceeded",
    5: "NotFound", 6: "AlreadyExists", 7: "PermissionDenied", 8: "ResourceExhausted",
    9: "FailedPrecondition", 10: "Aborted", 11: "OutOfRange", 12: "Unimplemented",
    13: "Internal", 14: "Unavailable", 15: "DataLoss", 16: "Unauthenticated",
}

SUCCESS: Final = "success"
FAILURE: Final = "failure"


def classify(status: int, grpc_status: int | None = None, error: str = "") -> str:
    """``"success"`` or ``"failure"`` for a finished response.

    >>> classify(200), classify(404), classify(503), classify(200, 14), classify(200, error="reset")
    ('success', 'success', 'failure', 'failure', 'failure')
    """
    if error or status >= 500:
        return FAILURE
    if grpc_status is not None and grpc_status in GRPC_FAILURES:
        return FAILURE
    return SUCCESS
