"""The exception tree of mcp-checkpoint.

```
CheckpointError
├── ConfigError
├── InvalidArgumentError   bad input: a clear message naming the field
├── NotFoundError          run / checkpoint / batch / memory
├── ConflictError          stale version, batch already committed, idempotency mismatch
├── PayloadTooLargeError   limits are explicit settings
├── AuthError              unauthenticated / forbidden (HTTP)
└── BackendError           unavailable, migration, embedding
```

Every error carries a stable ``code`` (the prefix a client sees, e.g. ``not_found: run r1``).
Messages are written for the caller: they name the field or the limit, never a DSN, a path
outside the data directory or a stack trace. Driver exceptions are translated into these at
the backend boundary (``raise BackendError(...) from exc``).
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "BackendError",
    "CheckpointError",
    "ConfigError",
    "ConflictError",
    "InvalidArgumentError",
    "NotFoundError",
    "PayloadTooLargeError",
]


class CheckpointError(Exception):
    """Base of every error mcp-checkpoint raises on purpose."""

    code: str = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ConfigError(CheckpointError):
    """The configuration is invalid or incomplete."""

    code = "config_error"


class InvalidArgumentError(CheckpointError):
    """An argument is malformed or out of range; the message names the field."""

    code = "invalid_argument"


class NotFoundError(CheckpointError):
    """A run, checkpoint, batch or memory does not exist (for this tenant)."""

    code = "not_found"


class ConflictError(CheckpointError):
    """A stale version, an already-committed batch, or an idempotency-key mismatch."""

    code = "conflict"


class PayloadTooLargeError(CheckpointError):
    """An argument exceeds a configured limit; the message names the limit setting."""

    code = "payload_too_large"


class AuthError(CheckpointError):
    """The caller is not authenticated, or not allowed to do this."""

    code = "unauthorized"


class BackendError(CheckpointError):
    """A storage or embedding backend failed or is unavailable."""

    code = "backend_unavailable"
