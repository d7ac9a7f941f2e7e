"""What the client library hands back: the hub's problems and opened inbox items.

Plain records, kept apart from `HubClient` so that the modules built on the client
(attachments, the adapter) can share them without importing the client itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.errors import GatewayError


class HubError(GatewayError):
    """The hub answered with a problem (RFC 9457)."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem = dict(problem)
        self.code = str(problem.get("code", "unknown"))
        super().__init__(f"{status} {self.code}: {problem.get('detail', '')}")


@dataclass(frozen=True, slots=True)
class Peer:
    org: str
    role: str
    domain: str | None
    signing_key: bytes
    encryption_key: bytes
    status: str


@dataclass(frozen=True, slots=True)
class Received:
    """An inbox message, opened: the metadata the hub saw and the sealed body."""

    message_id: int
    kind: str
    exchange_id: str | None
    sender: str
    case_ref: str
    subject_ref: str
    decision: str | None
    body: dict[str, Any] | None
    reason_code: str | None = None
    # What the hub checked of a wat-request: categories, purpose, legal basis, deadline.
    wat: dict[str, Any] | None = None
    # Set when the envelope failed its checks; such a message must not be acted on.
    error: str | None = None
    # kind "notification": the hub's metadata `{event, case_ref, ...}` (no envelope).
    notification: dict[str, Any] | None = None


class Answerable(Protocol):
    """A received dat- or wat-request, as far as answering it needs (a `Received`, or
    an adapter's stored delivery)."""

    @property
    def kind(self) -> str: ...

    @property
    def exchange_id(self) -> str | None: ...

    @property
    def sender(self) -> str: ...

    @property
    def case_ref(self) -> str: ...

    @property
    def subject_ref(self) -> str: ...


@dataclass(frozen=True)
class Reply:
    """One answer for `HubClient.answer`, `answer_many` and `answer_payload`."""

    request: Answerable
    decision: str
    body: Mapping[str, Any] | None = None
    reason_code: str | None = None
    attachments: Sequence[Mapping[str, Any]] = ()
