"""Wire models: what crosses the trust boundary as JSON (PROTOCOL §3-§7).

Pydantic v2, strict and `extra="forbid"` everywhere, so a misspelt field is a 400
and never silently ignored. Only the web layer and the client library validate
with these; inside the hub the services work with frozen dataclasses.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

ORG_PATTERN = r"^[a-z][a-z0-9-]{1,62}$"
REF_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"

OrgId = Annotated[str, StringConstraints(pattern=ORG_PATTERN)]
CaseRef = Annotated[str, StringConstraints(pattern=REF_PATTERN)]
SubjectRef = Annotated[str, StringConstraints(pattern=REF_PATTERN)]
ExchangeId = Annotated[str, StringConstraints(pattern=UUID_PATTERN)]
Pid = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{128}$")]
Kid = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
B64u = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]*$", max_length=16_777_216)]
Theme = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{1,62}$")]
ReasonCode = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{1,62}$")]
EpochMs = Annotated[int, Field(ge=0, le=10**15)]


class Role(StrEnum):
    HUB = "hub"
    ZVH = "zvh"
    PARTNER = "partner"
    INCIDENTAL = "incidental"


class Domain(StrEnum):
    ZORG = "zorg"
    STRAF = "straf"
    BESTUUR = "bestuur"
    JEUGD = "jeugd"
    SOCIAAL = "sociaal"


class OrgStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


class CaseStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class EnvelopeKind(StrEnum):
    DAT_REQUEST = "dat-request"
    DAT_ANSWER = "dat-answer"
    WAT_REQUEST = "wat-request"
    WAT_ANSWER = "wat-answer"
    MESSAGE = "message"
    REFERRAL = "referral"


class Decision(StrEnum):
    KNOWN = "known"
    NOT_KNOWN = "not-known"
    RELEASE = "release"
    PARTIAL = "partial"
    REFUSE = "refuse"


DAT_DECISIONS = frozenset({Decision.KNOWN, Decision.NOT_KNOWN})


class WireModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Envelope(WireModel):
    """PROTOCOL §4. Field order here is the wire order."""

    v: Literal[1]
    suite: Literal["hpke-base-x25519-sha256-chacha20poly1305"]
    kind: EnvelopeKind
    exchange_id: ExchangeId
    case_ref: Annotated[str, StringConstraints(max_length=64)]
    subject_ref: Annotated[str, StringConstraints(max_length=64)]
    sender: OrgId
    sender_kid: Kid
    recipient: OrgId
    recipient_kid: Kid
    created_ms: EpochMs
    enc: B64u
    ct: B64u
    sig: B64u


class SubjectIn(WireModel):
    subject_ref: SubjectRef
    pid: Pid


class CaseCreate(WireModel):
    case_ref: CaseRef
    theme: Theme
    subjects: Annotated[list[SubjectIn], Field(min_length=1, max_length=32)]
    participants: Annotated[list[OrgId], Field(max_length=128)]


class ParticipantAdd(WireModel):
    org: OrgId


class Empty(WireModel):
    """POST endpoints that take no fields are sent `{}` (PROTOCOL §2)."""


class DatRequest(WireModel):
    case_ref: CaseRef
    subject_ref: SubjectRef
    envelopes: Annotated[list[Envelope], Field(min_length=1, max_length=64)]


BlobId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
BlobList = Annotated[list[BlobId], Field(max_length=64)]


class MessageIn(WireModel):
    """`POST /api/v1/messages` (extension): a secure case message, one envelope of
    kind `message` per recipient; `blobs` names the attachments the sealed body
    describes, so that the hub can let the recipients fetch them."""

    case_ref: CaseRef
    subject_ref: Annotated[str, StringConstraints(pattern=r"^$|" + REF_PATTERN)] = ""
    envelopes: Annotated[list[Envelope], Field(min_length=1, max_length=64)]
    blobs: BlobList = []


class ReferralIn(WireModel):
    """`POST /api/v1/referrals` (extension): an aanmelding sealed to the region's ZVH."""

    envelope: Envelope
    blobs: BlobList = []


class Answer(WireModel):
    decision: Decision
    reason_code: ReasonCode | None = None
    envelope: Envelope | None = None
    # Extension: attachments the sealed answer describes (PROTOCOL §4.1).
    blobs: BlobList = []


class AnswerItem(Answer):
    exchange_id: ExchangeId


class AnswerBatch(WireModel):
    """Extension: a responder answers up to 100 exchanges in one signed request."""

    answers: Annotated[list[AnswerItem], Field(min_length=1, max_length=100)]


class AckBatch(WireModel):
    message_ids: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1, max_length=1000)]


Text = Annotated[str, StringConstraints(max_length=4000)]
WAT_DECISIONS = frozenset({Decision.RELEASE, Decision.PARTIAL, Decision.REFUSE})


class FiveQuestions(WireModel):
    """The five questions when there is no consent (doel, noodzaak, subsidiariteit,
    proportionaliteit, effectiviteit). Each must be a non-empty answer."""

    purpose: Text | None = None
    necessity: Text | None = None
    subsidiarity: Text | None = None
    proportionality: Text | None = None
    effectiveness: Text | None = None


class LegalBasis(WireModel):
    """PROTOCOL §3. Every field optional (and "" allowed) so that an incomplete basis
    is a recorded 403 legal-basis-missing, not a 400."""

    gdpr_art6: Literal["a", "b", "c", "d", "e", "f", ""] | None = None
    gdpr_special: Literal["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "art10", ""] | None = (
        None
    )
    national_law: Text | None = None
    secrecy_permission: Literal["consent", "statutory-duty", "conflict-of-duties", ""] | None = None
    consent_ref: Text | None = None
    five_questions: FiveQuestions | None = None


Category = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{1,62}$")]


class WatRequest(WireModel):
    case_ref: CaseRef
    subject_ref: SubjectRef
    holder: OrgId
    categories: Annotated[list[Category], Field(min_length=1, max_length=16)]
    purpose: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    processing_activity: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    legal_basis: LegalBasis
    envelope: Envelope


class AccessionIn(WireModel):
    protocol_id: Annotated[str, StringConstraints(pattern=REF_PATTERN)]
    hub: OrgId
    org: OrgId
    text_sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    signed_at_ms: EpochMs
    sig: B64u


class Signer(WireModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    role: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class DeclarationIn(WireModel):
    hub: OrgId
    case_ref: CaseRef
    signer: Signer
    valid_from_ms: EpochMs
    valid_until_ms: EpochMs
    text_sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    sig: B64u


# -- the national check (PROTOCOL §6, §7) ---------------------------------------------

# A ristretto255 element: 32 bytes, b64u without padding.
Element = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{43}$")]


class EvaluateIn(WireModel):
    """`POST /api/v1/pseudonyms/evaluate` at a hub, `/api/v1/oprf/evaluate` at the
    pseudonymiser; each node also applies its own batch limit."""

    blinded: Annotated[list[Element], Field(min_length=1, max_length=1000)]


class EvaluateOut(WireModel):
    evaluated: Annotated[list[Element], Field(min_length=1, max_length=1000)]


class IndexRegistration(WireModel):
    """One hub's registration of a pid at the national index."""

    hub: OrgId
    status: CaseStatus
    since_ms: EpochMs
    lease_until_ms: EpochMs


class IndexLookupIn(WireModel):
    pid: Pid


class IndexLookupOut(WireModel):
    registrations: Annotated[list[IndexRegistration], Field(max_length=1000)]


class IndexPutOut(WireModel):
    registration: IndexRegistration


class KnownCheckIn(WireModel):
    """`POST /api/v1/known-checks`; `purpose` is one of the region's themes."""

    pid: Pid
    purpose: Theme
    case_ref: CaseRef | None = None


class IndexDeleteIn(WireModel):
    """The optional body of `DELETE /api/v1/index/registrations/{pid}`."""

    hub: OrgId
