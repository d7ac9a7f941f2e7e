"""What may become a pid (PROTOCOL §6): the checks of a BSN and a birth date before
they are turned into the OPRF input.

Shared by the client library (a partner computing a pid in its own process) and the
hub (a privacy officer's subject-access report by BSN), so both refuse exactly the
same inputs. Every error says what is wrong, in English (`str(err)`, for logs of
the caller's own code) and in Dutch (`err.dutch`, for the review pages), and never
repeats the value: it would carry a BSN into a log or a page.
"""

from __future__ import annotations

import datetime as dt

from gateway.crypto.oprf import is_valid_bsn

BirthDate = str | dt.date


class PseudonymInputError(ValueError):
    """A BSN or birth date that cannot make a pid; the messages never hold the value."""

    def __init__(self, message: str, dutch: str, field: str) -> None:
        super().__init__(message)
        self.dutch = dutch
        self.field = field  # "bsn" or "birth_date"


def _bsn_error(message: str, dutch: str) -> PseudonymInputError:
    return PseudonymInputError(message, dutch, "bsn")


def _date_error(message: str, dutch: str) -> PseudonymInputError:
    return PseudonymInputError(message, dutch, "birth_date")


def check_bsn(bsn: str) -> str:
    if not isinstance(bsn, str) or len(bsn) != 9 or not (bsn.isascii() and bsn.isdigit()):
        raise _bsn_error(
            "the BSN must be exactly 9 digits", "Het BSN moet uit precies 9 cijfers bestaan."
        )
    if not is_valid_bsn(bsn):
        raise _bsn_error(
            "the BSN fails the 11-test (a typing error?)",
            "Dit BSN voldoet niet aan de elfproef (een tikfout?).",
        )
    return bsn


_FORMAT = (
    "the birth date must be YYYY-MM-DD or YYYYMMDD",
    "De geboortedatum moet de vorm JJJJ-MM-DD of JJJJMMDD hebben.",
)


def check_birth_date(value: BirthDate, today: dt.date) -> str:
    """YYYYMMDD from a date, "YYYY-MM-DD" or "YYYYMMDD"; month or day 00 where the
    population register has it as unknown (a known day in an unknown month is not)."""
    if isinstance(value, dt.datetime):
        raise _date_error(
            "the birth date must be a date, not a date and time",
            "De geboortedatum moet een datum zijn, zonder tijd.",
        )
    if isinstance(value, dt.date):
        text = value.strftime("%Y%m%d")
    elif isinstance(value, str):
        text = value[:4] + value[5:7] + value[8:] if len(value) == 10 else value
        if len(value) == 10 and (value[4] != "-" or value[7] != "-"):
            raise _date_error(*_FORMAT)
    else:
        raise _date_error(
            "the birth date must be a date or a string", "De geboortedatum ontbreekt."
        )
    if len(text) != 8 or not (text.isascii() and text.isdigit()):
        raise _date_error(*_FORMAT)
    year, month, day = int(text[:4]), int(text[4:6]), int(text[6:])
    if year < 1850:
        raise _date_error("the birth year is before 1850", "Het geboortejaar ligt voor 1850.")
    if month > 12:
        raise _date_error(
            "the birth month must be 01-12, or 00 when unknown",
            "De geboortemaand moet 01 tot en met 12 zijn, of 00 als die onbekend is.",
        )
    if month == 0 and day != 0:
        raise _date_error(
            "a birth day needs a birth month (use 00 for both)",
            "Een geboortedag kan niet zonder geboortemaand (gebruik dan 00 voor beide).",
        )
    if month and day:
        try:
            born = dt.date(year, month, day)
        except ValueError:
            raise _date_error(
                "the birth date does not exist in the calendar",
                "Deze geboortedatum bestaat niet.",
            ) from None
    else:
        born = dt.date(year, month or 1, 1)
    if born > today:
        raise _date_error(
            "the birth date is in the future", "De geboortedatum ligt in de toekomst."
        )
    return text
