"""Prometheus metrics: one injected `Metrics` object with its own registry.

The only importer of prometheus_client. Names follow
`zvh_gateway_<subsystem>_<name>_<unit>`, counters end in `_total`, timestamps are
gauges in seconds since the epoch (so alerts compute ages with `time() - x`).

Label values come from closed sets only: route templates, methods, status codes,
error and decision codes, transaction names, the services of the national check,
the organisation ids and protocol ids in the hub's own directory. Never a case,
subject, pid, exchange or request id, and never anything a partner sent.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CONTENT_TYPE_LATEST as _CONTENT_TYPE
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)

import gateway

CONTENT_TYPE = _CONTENT_TYPE
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0)
# The national services answer over the network, within the hub's timeout (seconds).
_REMOTE = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)


class Metrics:
    def __init__(self, role: str = "hub") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.build_info = Info("zvh_gateway_build", "Build information", registry=r)
        self.build_info.info({"version": gateway.__version__, "role": role, "protocol": "1"})
        self.http_requests = Counter(
            "zvh_gateway_http_requests_total",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "zvh_gateway_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["route", "method"],
            buckets=_LATENCY,
            registry=r,
        )
        self.loop_lag = Histogram(
            "zvh_gateway_event_loop_lag_seconds",
            "How late a 50 ms timer fires on the event loop (a busy loop delays every request)",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.signature_verifier_up = Gauge(
            "zvh_gateway_signature_verifier_up",
            "1 while the verifier process checks the signatures; 0 while the event loop "
            "does (by configuration, or while the process is down)",
            registry=r,
        )
        self.auth_failures = Counter(
            "zvh_gateway_auth_failures_total",
            "Rejected request signatures by code",
            ["code"],
            registry=r,
        )
        self.policy_decisions = Counter(
            "zvh_gateway_policy_decisions_total",
            "Policy decisions by decision and code",
            ["decision", "code"],
            registry=r,
        )
        self.exchanges = Counter(
            "zvh_gateway_exchange_steps_total",
            "Exchange steps by type and outcome",
            ["type", "outcome"],
            registry=r,
        )
        self.db_tx = Histogram(
            "zvh_gateway_storage_transaction_duration_seconds",
            "Time from queueing to commit of a named transaction",
            ["name", "ok"],
            buckets=_LATENCY,
            registry=r,
        )
        self.db_batch_jobs = Histogram(
            "zvh_gateway_storage_batch_jobs",
            "Jobs per group commit",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=r,
        )
        self.db_batch_seconds = Histogram(
            "zvh_gateway_storage_batch_duration_seconds",
            "Duration of one group commit",
            buckets=_LATENCY,
            registry=r,
        )
        self.db_job = Histogram(
            "zvh_gateway_storage_job_run_seconds",
            "Time a named job itself takes on the database thread",
            ["name"],
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1),
            registry=r,
        )
        self.db_commit = Histogram(
            "zvh_gateway_storage_commit_seconds",
            "Duration of COMMIT (the fsync)",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1),
            registry=r,
        )
        self.ledger_size = Gauge(
            "zvh_gateway_ledger_entries",
            "Entries in the ledger",
            registry=r,
        )
        self.inbox_backlog = Gauge(
            "zvh_gateway_inbox_backlog_messages",
            "Unacknowledged messages per organisation",
            ["org"],
            registry=r,
        )
        self.inbox_oldest_age = Gauge(
            "zvh_gateway_inbox_oldest_message_age_seconds",
            "Age of the oldest unacknowledged message per organisation",
            ["org"],
            registry=r,
        )

        self.wat_pending = Gauge(
            "zvh_gateway_wat_requests_pending",
            "wat-requests awaiting the holder's decision",
            registry=r,
        )
        self.wat_overdue = Gauge(
            "zvh_gateway_wat_requests_overdue",
            "wat-requests past their decision deadline",
            registry=r,
        )
        self.checkpoint_time = Gauge(
            "zvh_gateway_ledger_checkpoint_timestamp_seconds",
            "When the latest checkpoint was signed",
            registry=r,
        )
        self.checkpoint_size = Gauge(
            "zvh_gateway_ledger_checkpoint_size_entries",
            "Tree size of the latest signed checkpoint",
            registry=r,
        )
        # The hub's periodic light self-check of its ledger (see services/ops.py).
        self.ledger_self_check = Gauge(
            "zvh_gateway_ledger_self_check_success",
            "1 if the last self-check of the signed checkpoint and the tree passed, else 0",
            registry=r,
        )
        self.ledger_self_check_time = Gauge(
            "zvh_gateway_ledger_self_check_timestamp_seconds",
            "When the last ledger self-check ran",
            registry=r,
        )

        # Expiry of what membership rests on; alerts warn 14 days ahead.
        self.key_expiry = Gauge(
            "zvh_gateway_directory_key_expiry_timestamp_seconds",
            "When an active organisation's registered keys expire (only keys with an expiry)",
            ["org"],
            registry=r,
        )
        self.accession_expiry = Gauge(
            "zvh_gateway_membership_accession_expiry_timestamp_seconds",
            "When an organisation's accession to the protocol in force ends with that protocol",
            ["org"],
            registry=r,
        )
        self.protocol_expiry = Gauge(
            "zvh_gateway_membership_protocol_expiry_timestamp_seconds",
            "When the privacy protocol in force ends (only a protocol with an end)",
            ["protocol"],
            registry=r,
        )

        # Calls to the national pseudonymiser and index (fed by the national check).
        self.federation_latency = Histogram(
            "zvh_gateway_federation_call_duration_seconds",
            "Calls to a national service, failed ones included, by service and operation",
            ["service", "operation"],
            buckets=_REMOTE,
            registry=r,
        )
        self.federation_errors = Counter(
            "zvh_gateway_federation_call_errors_total",
            "Failed calls to a national service by reason: timeout, connect, status, response",
            ["service", "operation", "reason"],
            registry=r,
        )
        self.rate_limited = Counter(
            "zvh_gateway_ratelimit_rejections_total",
            "Requests refused with 429 rate-limited, by route template and organisation",
            ["route", "org"],
            registry=r,
        )
        # The national check: the hub's canary and index outbox, known-checks answered,
        # and blinded elements evaluated (by partner at a hub, by hub at the pseudonymiser).
        self.canary_match = Gauge(
            "zvh_gateway_national_canary_match",
            "1 if the pseudonymiser gave the pinned canary pid at the last check, 0 if not",
            registry=r,
        )
        self.canary_time = Gauge(
            "zvh_gateway_national_canary_timestamp_seconds",
            "When the canary pid was last compared",
            registry=r,
        )
        self.index_outbox = Gauge(
            "zvh_gateway_national_outbox_pending",
            "Pid states of this hub that the national index has not confirmed yet",
            registry=r,
        )
        self.known_checks = Counter(
            "zvh_gateway_known_checks_total",
            "Known-checks answered, by result: match, no-match, partial (a service was out)",
            ["result"],
            registry=r,
        )
        self.oprf_evaluations = Counter(
            "zvh_gateway_oprf_evaluations_total",
            "Blinded elements evaluated, by requesting organisation",
            ["org"],
            registry=r,
        )
        # Attachments (ciphertext blobs) and inbox notifications (issue #8).
        self.blobs_stored = Gauge(
            "zvh_gateway_blobs_stored",
            "Attachment blobs stored at the hub",
            registry=r,
        )
        self.blob_bytes_stored = Gauge(
            "zvh_gateway_blob_stored_bytes",
            "Bytes of attachment ciphertext stored at the hub",
            registry=r,
        )
        self.blob_budget = Gauge(
            "zvh_gateway_blob_budget_bytes",
            "The blob store's budget ([messages] blob_store_budget_bytes)",
            registry=r,
        )
        self.blob_oldest_unfetched = Gauge(
            "zvh_gateway_blob_oldest_unfetched_timestamp_seconds",
            "Upload time of the oldest blob a recipient has not fetched yet (0: none)",
            registry=r,
        )
        self.blob_uploads = Counter(
            "zvh_gateway_blob_uploads_total",
            "Blob uploads by outcome (stored, too-large, storage-full, digest-mismatch,"
            " refused, invalid, cut-off)",
            ["outcome"],
            registry=r,
        )
        self.blob_transfer = Counter(
            "zvh_gateway_blob_transfer_bytes_total",
            "Attachment bytes received (upload) and sent (download)",
            ["direction"],
            registry=r,
        )
        self.notifications = Counter(
            "zvh_gateway_notifications_total",
            "Inbox notifications queued, by event",
            ["event"],
            registry=r,
        )
        # CPU, memory, file descriptors and start time of this process.
        ProcessCollector(namespace="zvh_gateway", registry=r)
        self._families: dict[int, set[str]] = {}

    # TxObserver
    def observe_transaction(self, name: str, seconds: float, ok: bool) -> None:
        self.db_tx.labels(name, "true" if ok else "false").observe(seconds)

    def observe_job(self, name: str, seconds: float) -> None:
        self.db_job.labels(name).observe(seconds)

    def observe_commit(self, seconds: float) -> None:
        self.db_commit.observe(seconds)

    def observe_batch(self, jobs: int, seconds: float) -> None:
        self.db_batch_jobs.observe(jobs)
        self.db_batch_seconds.observe(seconds)

    def set_family(self, gauge: Gauge, values: Mapping[str, float]) -> None:
        """Set a one-label gauge to exactly `values`: labels no longer present are removed
        (a revoked organisation or an ended protocol must not keep alerting)."""
        wanted = set(values)
        for stale in self._families.get(id(gauge), set()) - wanted:
            gauge.remove(stale)
        for label, value in values.items():
            gauge.labels(label).set(value)
        self._families[id(gauge)] = wanted

    def render(self) -> bytes:
        return generate_latest(self.registry)
