"""What a MongoDB failure means for a batch: retry later, refuse its content, or run it again."""

from __future__ import annotations

from pymongo.errors import (
    ConnectionFailure,
    DuplicateKeyError,
    OperationFailure,
    ServerSelectionTimeoutError,
)

from service.app.store import ConcurrentUpdate, StoreRejected, StoreUnavailable

DUPLICATE_KEY = 11000
# Shutdown in progress, primary stepped down, not primary: the next primary takes the retry.
_STEPDOWN_CODES = {91, 189, 11600, 11602, 10107, 13435, 13436}


def classify(error: BaseException) -> Exception:
    """Map a driver error to what the caller should do about it."""
    if isinstance(error, ConnectionFailure | ServerSelectionTimeoutError):
        return StoreUnavailable(str(error))
    if isinstance(error, OperationFailure) and (
        error.has_error_label("TransientTransactionError")
        or error.has_error_label("RetryableWriteError")
        or error.code in _STEPDOWN_CODES
    ):
        return StoreUnavailable(str(error))
    if isinstance(error, DuplicateKeyError):
        return ConcurrentUpdate(str(error))
    return StoreRejected(f"{type(error).__name__}: {error}")
