"""Phone numbers to E.164 with `phonenumbers`."""

from __future__ import annotations

import phonenumbers


class InvalidPhoneNumber(ValueError):
    """The text is not a valid phone number (in the region given, if it has no country code)."""


def to_e164(raw: str, default_region: str | None = None) -> str:
    """Parse a number as people write it and return its E.164 form, or raise."""
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException as error:
        hint = "" if default_region else " (give it with its +country code)"
        raise InvalidPhoneNumber(f"not a phone number{hint}: {error}") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhoneNumber("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
