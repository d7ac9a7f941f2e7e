"""Client side of pseudonyms (PROTOCOL §6): check the input, blind, finalize.

A partner computes a person's pid without the BSN ever leaving its process: the
BSN and birth date are checked here (with errors that say what is wrong but never
repeat the value, which would carry it into logs), turned into the OPRF input,
blinded with a fresh random scalar, and only the blinded element goes to the hub.
The hub's answer is unblinded here (`Finalize`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.crypto.encoding import b64u_decode, b64u_encode
from gateway.crypto.oprf import blind, finalize, is_valid_bsn, pid_input
from gateway.errors import CryptoError

BirthDate = str | dt.date


class PseudonymInputError(ValueError):
    """A BSN or birth date that cannot make a pid; the message never holds the value."""


def check_bsn(bsn: str) -> str:
    if not isinstance(bsn, str) or len(bsn) != 9 or not (bsn.isascii() and bsn.isdigit()):
        raise PseudonymInputError("the BSN must be exactly 9 digits")
    if not is_valid_bsn(bsn):
        raise PseudonymInputError("the BSN fails the 11-test (a typing error?)")
    return bsn


def check_birth_date(value: BirthDate, today: dt.date) -> str:
    """YYYYMMDD from a date, "YYYY-MM-DD" or "YYYYMMDD"; month or day 00 where the
    population register has it as unknown (a known day in an unknown month is not)."""
    if isinstance(value, dt.datetime):
        raise PseudonymInputError("the birth date must be a date, not a date and time")
    if isinstance(value, dt.date):
        text = value.strftime("%Y%m%d")
    elif isinstance(value, str):
        text = value[:4] + value[5:7] + value[8:] if len(value) == 10 else value
        if len(value) == 10 and (value[4] != "-" or value[7] != "-"):
            raise PseudonymInputError("the birth date must be YYYY-MM-DD or YYYYMMDD")
    else:
        raise PseudonymInputError("the birth date must be a date or a string")
    if len(text) != 8 or not (text.isascii() and text.isdigit()):
        raise PseudonymInputError("the birth date must be YYYY-MM-DD or YYYYMMDD")
    year, month, day = int(text[:4]), int(text[4:6]), int(text[6:])
    if year < 1850:
        raise PseudonymInputError("the birth year is before 1850")
    if month > 12:
        raise PseudonymInputError("the birth month must be 01-12, or 00 when unknown")
    if month == 0 and day != 0:
        raise PseudonymInputError("a birth day needs a birth month (use 00 for both)")
    if month and day:
        try:
            born = dt.date(year, month, day)
        except ValueError:
            raise PseudonymInputError("the birth date does not exist in the calendar") from None
    else:
        born = dt.date(year, month or 1, 1)
    if born > today:
        raise PseudonymInputError("the birth date is in the future")
    return text


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
