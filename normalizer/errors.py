"""The normaliser's one exception base: every input that cannot become a case-open."""


class Unprocessable(ValueError):
    """The input cannot become a case-open; str() is the reason. The original must be kept.

    Each normaliser raises its own subclass (`UnprocessableMail`, `UnusableNumber`,
    `UnprocessableUpdate`); callers catch this base.
    """
