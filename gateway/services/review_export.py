"""The compliance export: one ZIP with what the periodic privacy check of a ZVH asks
for (members and accessions, declarations, refusals, the latest signed checkpoint and
a ledger self-check), as CSV and JSON. Generating it is a ledger entry (a report).

Must not: put bodies of exchanges or pids in the archive (it is shared with auditors
and the national monitor; case refs and organisation ids only).
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Sequence
from typing import Any

from gateway.services import ops
from gateway.services.review import ReviewService


def _csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else str(row.get(c)) for c in columns])
    return out.getvalue().encode("utf-8")


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8")


def indicators(members: dict[str, Any]) -> dict[str, Any]:
    """The privacy indicators of the national ZVH monitor this hub can answer itself."""
    orgs = [o for o in members["organisations"] if o["status"] == "active"]
    partners = [o["org"] for o in orgs if o["role"] in ("partner", "zvh")]
    incidental = [o["org"] for o in orgs if o["role"] == "incidental"]
    lacking = set(members["lacking"])
    return {
        "signed_protocol_per_partner": {org: org not in lacking for org in partners},
        "declaration_per_incidental_partner": {org: org not in lacking for org in incidental},
        "current_protocol": members["current_protocol"],
        # Not known to the hub: answered by the region itself.
        "client_informed": None,
        "breach_protocol_link": None,
        "retention_respected": None,
    }


async def compliance_zip(
    review: ReviewService,
    *,
    user: str,
    ledger_note: str | None,
    self_check: ops.SelfCheck,
) -> bytes:
    members = await review.members()
    refusals = await review.refusals(None, 1000)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("indicators.json", _json(indicators(members)))
        archive.writestr("members.json", _json(members))
        archive.writestr(
            "accessions.csv",
            _csv(
                members["accessions"],
                ("protocol_id", "version", "org", "signed_at_ms", "revoked_ms", "valid_until_ms"),
            ),
        )
        archive.writestr(
            "declarations.csv",
            _csv(
                members["declarations"],
                ("org", "case_ref", "signer_role", "valid_from_ms", "valid_until_ms", "revoked_ms"),
            ),
        )
        archive.writestr("refusals.json", _json(refusals))
        archive.writestr(
            "refusal_counts.csv",
            _csv(refusals["counts"], ("month", "code", "org", "theme", "count")),
        )
        archive.writestr("checkpoint.txt", ledger_note or "")
        archive.writestr(
            "verification.json",
            _json({"ok": self_check.ok, "size": self_check.size, "problem": self_check.problem}),
        )
    await review.record_report(user, "compliance-export", {"ok": self_check.ok})
    return buffer.getvalue()
