"""Typed application and request state keys (aiohttp `AppKey`), and the hub's parts."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from gateway.clock import Clock
from gateway.config import Settings
from gateway.crypto.keys import OrgKeys
from gateway.crypto.verifier import Verifier
from gateway.metrics import Metrics
from gateway.policy.rules import Policy
from gateway.services.auth import Authenticator, ReplayCache, RequestAuth
from gateway.services.blobs import BlobService
from gateway.services.cases import CaseService
from gateway.services.directory import Directory
from gateway.services.exchange import ExchangeService
from gateway.services.inbox import InboxService, Waiters
from gateway.services.ledger import LedgerService
from gateway.services.membership import MembershipService
from gateway.services.messages import MessageService
from gateway.services.national import NationalService
from gateway.services.notifications import Notifier
from gateway.services.review import ReviewService
from gateway.services.review_auth import ReviewAuth
from gateway.storage.database import Database
from gateway.web.national_link import NationalLink


@dataclass(slots=True)
class Hub:
    """Everything one hub process wires together (built by the composition root)."""

    settings: Settings
    clock: Clock
    metrics: Metrics
    keys: OrgKeys
    db: Database
    directory: Directory
    replay: ReplayCache
    verifier: Verifier
    authenticator: Authenticator
    waiters: Waiters
    cases: CaseService
    exchanges: ExchangeService
    inbox: InboxService
    ledger: LedgerService
    membership: MembershipService
    policy: Policy
    national: NationalService
    review: ReviewService
    review_auth: ReviewAuth
    messages: MessageService
    blobs: BlobService
    notifier: Notifier
    national_link: NationalLink | None = None
    ready: bool = False


@dataclass(frozen=True, slots=True)
class NodeParts:
    """What the shared middleware needs of any node: a hub, the pseudonymiser or the index."""

    metrics: Metrics
    authenticator: Authenticator
    db: Database


HUB = web.AppKey("hub", Hub)
NODE = web.AppKey("node", NodeParts)
AUTH = web.RequestKey("auth", RequestAuth)
BODY = web.RequestKey("body", bytes)


def auth_of(request: web.Request) -> RequestAuth:
    auth: RequestAuth | None = request.get(AUTH)
    if auth is None:  # a route outside the signed API asked for it
        raise RuntimeError("request is not authenticated")
    return auth
