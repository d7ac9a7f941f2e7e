"""The local API's request and response models (pydantic, `extra="forbid"`).

These are the trust boundary between the partner's own system and its adapter: the
partner sends plain JSON, the adapter validates it here, then seals and signs. The
OpenAPI document (`local_openapi.py`) is generated from these same classes, so the
document and the validation cannot drift apart. The file drop validates each
dropped request with them too.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.models import CaseRef, ExchangeId, OrgId, Pid, ReasonCode, SubjectRef, Theme

Body = Annotated[
    dict[str, Any],
    Field(description="Sealed end to end to the recipient; the hub never sees it."),
]
Category = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{1,62}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Open(BaseModel):
    """A response: the hub may add members; clients must ignore what they do not know."""

    model_config = ConfigDict(extra="allow")


class CaseSubject(_Strict):
    subject_ref: SubjectRef
    pid: Pid


class CaseRequest(_Strict):
    """Register a case (the region's ZVH organisation only)."""

    case_ref: CaseRef
    theme: Theme
    subjects: Annotated[list[CaseSubject], Field(min_length=1, max_length=50)]
    participants: Annotated[list[OrgId], Field(max_length=100)] = []


class DatRequest(_Strict):
    """Ask each recipient whether it knows the person described in `body`."""

    case_ref: CaseRef
    subject_ref: SubjectRef
    recipients: Annotated[list[OrgId], Field(min_length=1, max_length=100)]
    body: Body
    exchange_id: ExchangeId | None = Field(
        default=None, description="Chosen by the adapter when absent (UUID v4)."
    )


class WatRequest(_Strict):
    """Ask `holder` what it may share, with the legal basis (PROTOCOL §3.2)."""

    case_ref: CaseRef
    subject_ref: SubjectRef
    holder: OrgId
    categories: Annotated[list[Category], Field(min_length=1, max_length=16)]
    purpose: Annotated[str, Field(min_length=1, max_length=2000)]
    processing_activity: Annotated[str, Field(min_length=1, max_length=200)]
    legal_basis: dict[str, Any]
    body: Body
    exchange_id: ExchangeId | None = None


Decision = Literal["known", "not-known", "release", "partial", "refuse"]


class AnswerRequest(_Strict):
    """Answer a dat- or wat-request this adapter received (by its exchange id)."""

    exchange_id: ExchangeId
    decision: Decision
    reason_code: ReasonCode | None = None
    body: Body | None = None


class AttachmentRef(_Strict):
    """A file in the adapter's attachment folder (`[local] attachment_dir`); it is
    encrypted in chunks and uploaded as a blob, never held in memory whole."""

    path: Annotated[
        str,
        Field(min_length=1, max_length=4096, description="Relative to the attachment folder."),
    ]
    media_type: Annotated[str, Field(pattern=r"^[a-z0-9.+-]+/[a-z0-9.+-]+$")]
    filename: Annotated[str, Field(min_length=1, max_length=255)]


class MessageRequest(_Strict):
    """A secure case message to participants of a case (replaces e-mail)."""

    case_ref: CaseRef
    recipients: Annotated[list[OrgId], Field(min_length=1, max_length=64)]
    body: Body
    subject_ref: Annotated[str, Field(pattern=r"^$|^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")] = ""
    attachments: Annotated[list[AttachmentRef], Field(max_length=20)] = []


class ReferralRequest(_Strict):
    """A referral (aanmelding) to the region's ZVH organisation."""

    body: Body
    attachments: Annotated[list[AttachmentRef], Field(max_length=20)] = []


class AccessionRequest(_Strict):
    """Sign the accession to the region's privacy protocol (default: the newest)."""

    protocol_id: Annotated[str, Field(min_length=1, max_length=100)] | None = None


class LedgerRefOut(_Open):
    index: int
    leaf_hash: str


class Denied(_Open):
    org: str
    code: str


class CaseResponse(_Open):
    case_ref: str
    status: str
    participants: list[str]
    ledger: list[LedgerRefOut]


class ExchangeResponse(_Open):
    """The hub's answer to a dat- or wat-request."""

    exchange_id: str
    delivered: list[str]
    denied: list[Denied]
    ledger: list[LedgerRefOut]


class AnswerResponse(_Open):
    exchange_id: str
    ledger: list[LedgerRefOut]


class SentResponse(_Open):
    """The hub's answer to a message or referral."""


class AccessionResponse(_Open):
    protocol_id: str
    org: str
    signed_at_ms: int


class FieldError(_Open):
    loc: list[str | int]
    msg: str
    type: str


class Problem(_Open):
    """RFC 9457 problem details. Never echoes a submitted value."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[FieldError] | None = None


class DeadLetter(_Open):
    message_id: int
    kind: str
    exchange_id: str | None
    case_ref: str
    state: str
    attempts: int
    last_error: str | None
    received_ms: int
    dead_ms: int | None


class DeadLetters(_Open):
    dead_letters: list[DeadLetter]


class Retried(_Open):
    retried: list[int]


class WebhookItem(_Strict):
    """What the adapter POSTs to the partner system for each inbox item."""

    message_id: int
    kind: str
    exchange_id: str | None
    sender: str = Field(alias="from")
    case_ref: str
    subject_ref: str
    decision: str | None = None
    reason_code: str | None = None
    wat: dict[str, Any] | None = None
    body: dict[str, Any] | None = None
    attempt: int

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class WebhookReply(_Strict):
    """The partner system's optional reply to a dat- or wat-request: the adapter seals
    `body` to the requester and sends it as the answer. Without `decision`, nothing
    is answered now (answer later with POST /local/v1/answers)."""

    decision: Decision | None = None
    reason_code: ReasonCode | None = None
    body: dict[str, Any] | None = None

    model_config = ConfigDict(extra="ignore")


# The operations of the local API: (name, path, request model, response model, status).
OPERATIONS: tuple[tuple[str, str, type[BaseModel], type[BaseModel], int, str], ...] = (
    ("cases", "/local/v1/cases", CaseRequest, CaseResponse, 201, "Register a case"),
    (
        "dat-requests",
        "/local/v1/dat-requests",
        DatRequest,
        ExchangeResponse,
        202,
        "Send a dat-request",
    ),
    (
        "wat-requests",
        "/local/v1/wat-requests",
        WatRequest,
        ExchangeResponse,
        202,
        "Send a wat-request",
    ),
    ("answers", "/local/v1/answers", AnswerRequest, AnswerResponse, 202, "Answer a request"),
    ("messages", "/local/v1/messages", MessageRequest, SentResponse, 202, "Send a case message"),
    ("referrals", "/local/v1/referrals", ReferralRequest, SentResponse, 202, "Send a referral"),
    (
        "accessions",
        "/local/v1/accessions",
        AccessionRequest,
        AccessionResponse,
        201,
        "Sign the privacy protocol",
    ),
)
REQUEST_MODELS: dict[str, type[BaseModel]] = {op[0]: op[2] for op in OPERATIONS}
