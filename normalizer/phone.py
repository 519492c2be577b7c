"""Phone numbers to E.164 with `phonenumbers`."""

from __future__ import annotations


class InvalidPhoneNumber(ValueError):
    """The text is not a valid phone number (in the region given, if it has no country code)."""


def to_e164(raw: str, default_region: str | None = None) -> str:
    """Parse a number as people write it and return its E.164 form, or raise."""
    import phonenumbers  # its metadata takes a while to import: only when a number comes

    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException as error:
        if error.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            raise InvalidPhoneNumber("write the number with + and its country code") from None
        raise InvalidPhoneNumber("not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhoneNumber("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def region_of(number: str) -> str | None:
    """The region (ISO 3166 code, e.g. "DE") of a number in E.164, if it has one."""
    import phonenumbers

    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.region_code_for_number(parsed)
