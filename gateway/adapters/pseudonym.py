"""Client side of pseudonyms (PROTOCOL §6): check the input, blind, finalize.

A partner computes a person's pid without the BSN ever leaving its process: the
BSN and birth date are checked here (with errors that say what is wrong but never
repeat the value, which would carry it into logs), turned into the OPRF input,
blinded with a fresh random scalar, and only the blinded element goes to the hub.
The hub's answer is unblinded here (`Finalize`). The input checks themselves are
in `gateway.crypto.pid_inputs`, shared with the hub's subject-access report.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.crypto.encoding import b64u_decode, b64u_encode
from gateway.crypto.oprf import blind, finalize, pid_input
from gateway.crypto.pid_inputs import (
    BirthDate,
    PseudonymInputError,
    check_birth_date,
    check_bsn,
)
from gateway.errors import CryptoError

__all__ = [
    "BirthDate",
    "Blinded",
    "PseudonymInputError",
    "blind_people",
    "check_birth_date",
    "check_bsn",
]


@dataclass(frozen=True, slots=True)
class Blinded:
    """One person's OPRF input and blind: stays in the partner's process."""

    input_: bytes
    blind: bytes
    element: str  # b64u: the only thing that is sent

    def finish(self, evaluated: str) -> str:
        """Finalize with the pseudonymiser's answer: the pid, lowercase hex."""
        try:
            return finalize(self.input_, self.blind, b64u_decode(evaluated)).hex()
        except (CryptoError, ValueError):
            raise CryptoError("the hub returned an invalid evaluated element") from None


def blind_people(people: Sequence[tuple[str, BirthDate]], today: dt.date) -> list[Blinded]:
    """Check every person first (so a bad one sends nothing), then blind each."""
    inputs = [pid_input(check_bsn(bsn), check_birth_date(birth, today)) for bsn, birth in people]
    out = []
    for x in inputs:
        r, element = blind(x)
        out.append(Blinded(x, r, b64u_encode(element)))
    return out
