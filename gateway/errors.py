"""The one error tree of zvh-gateway, and the RFC 9457 codes it maps to.

Only `gateway.web.middleware` turns these into HTTP responses. Everything deeper
raises them (translating library exceptions where the library is called, with
``raise ... from exc``) and never builds an HTTP response itself::

    GatewayError                       (500 internal-error)
    ├── ConfigError                    (not an HTTP error: bad config or policy file)
    ├── CryptoError                    (one opaque failure; the reason goes to the log)
    │   ├── SignatureError
    │   └── EnvelopeError
    └── ProblemError                   (has .status and .code: an RFC 9457 problem)
        ├── InvalidRequest             400 invalid-request   (.errors lists field paths)
        ├── Unauthenticated            401 unauthenticated   (no reason leaks)
        ├── ReplayedRequest            401 replayed-request
        ├── Forbidden                  403 <code>            (denials: also a ledger entry)
        ├── NotFound                   404 not-found
        ├── Conflict                   409 <code>  (case-exists, exchange-exists, case-closed)
        ├── PayloadTooLarge            413 payload-too-large
        ├── RateLimited                429 rate-limited      (.retry_after_s)
        ├── ServiceUnavailable         503 service-unavailable
        └── StorageFull                507 storage-full      (the blob store's budget)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any


class DenyCode(StrEnum):
    """The 403 codes of PROTOCOL §3, in the order of precedence they are checked."""

    FORBIDDEN_ROLE = "forbidden-role"
    NOT_A_MEMBER = "not-a-member"
    DECLARATION_REQUIRED = "declaration-required"
    NOT_A_PARTICIPANT = "not-a-participant"
    DAT_REQUIRED = "dat-required"
    LEGAL_BASIS_MISSING = "legal-basis-missing"
    CATEGORY_NOT_ALLOWED = "category-not-allowed"


class GatewayError(Exception):
    """Base of every error zvh-gateway raises on purpose."""


class ConfigError(GatewayError):
    """A config, key or policy file is missing, unreadable or inconsistent."""


class CryptoError(GatewayError):
    """A cryptographic check failed. Callers see one opaque failure; `reason` is for logs."""

    def __init__(self, reason: str = "crypto failure") -> None:
        super().__init__(reason)
        self.reason = reason


class SignatureError(CryptoError):
    """An HTTP message signature or a signed record did not verify."""


class EnvelopeError(CryptoError):
    """An envelope could not be verified or opened."""


class ProblemError(GatewayError):
    """An error the client may see, rendered as RFC 9457 problem details."""

    status: int = 500
    code: str = "internal-error"
    title: str = "Internal error"

    def __init__(self, detail: str = "", *, code: str | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        if code is not None:
            self.code = code
        # Set by the layer that recorded the problem in the ledger (403s).
        self.ledger: list[dict[str, Any]] | None = None

    def extra(self) -> Mapping[str, Any]:
        """Extension members of the problem body, beyond the RFC 9457 ones."""
        return {}


class InvalidRequest(ProblemError):
    status = 400
    code = "invalid-request"
    title = "Invalid request"

    def __init__(self, detail: str = "", *, errors: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__(detail)
        self.errors = [dict(e) for e in errors]

    def extra(self) -> Mapping[str, Any]:
        return {"errors": self.errors} if self.errors else {}


class Unauthenticated(ProblemError):
    status = 401
    code = "unauthenticated"
    title = "Unauthenticated"

    def __init__(self, reason: str = "") -> None:
        # The reason is for the log only: a 401 never tells the caller which check failed.
        super().__init__("The request signature could not be verified.")
        self.reason = reason


class ReplayedRequest(ProblemError):
    status = 401
    code = "replayed-request"
    title = "Replayed request"


class Forbidden(ProblemError):
    status = 403
    code = "forbidden"
    title = "Forbidden"

    def __init__(self, code: DenyCode, detail: str = "") -> None:
        super().__init__(detail or code.value, code=code.value)
        self.deny_code = code


class NotFound(ProblemError):
    status = 404
    code = "not-found"
    title = "Not found"


class Conflict(ProblemError):
    status = 409
    code = "conflict"
    title = "Conflict"


class PayloadTooLarge(ProblemError):
    status = 413
    code = "payload-too-large"
    title = "Payload too large"


class RateLimited(ProblemError):
    status = 429
    code = "rate-limited"
    title = "Too many requests"

    def __init__(self, retry_after_s: int, detail: str = "") -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class ServiceUnavailable(ProblemError):
    status = 503
    code = "service-unavailable"
    title = "Service unavailable"


class StorageFull(ProblemError):
    """RFC 4918's 507: the blob store is at its budget. Retry later, after recipients
    fetched what is waiting (the hub deletes a blob then)."""

    status = 507
    code = "storage-full"
    title = "Insufficient storage"


class CsrfRejected(ProblemError):
    """A review form or review POST without the CSRF token of its session (403)."""

    status = 403
    code = "csrf-rejected"
    title = "Forbidden"
