"""Prometheus metrics: one injected `Metrics` object with its own registry.

The only importer of prometheus_client. Label values come from closed sets only
(route templates, configured organisation ids, codes, transaction names): never a
case, subject, pid, exchange or request id.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST as _CONTENT_TYPE
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

import gateway

CONTENT_TYPE = _CONTENT_TYPE
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0)


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

    def render(self) -> bytes:
        return generate_latest(self.registry)
