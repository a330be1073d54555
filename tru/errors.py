"""Errors a user can act on. The CLI prints them as one line and exits non-zero."""


class TruError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = 2


class DataError(TruError):
    """An input file is missing, corrupt, or does not match what the stage expects."""


class ConfigError(TruError):
    """params.yaml is invalid: an unknown, missing or mistyped key."""


class ValidationFailed(TruError):
    """A data expectation (Great Expectations) failed."""

    exit_code = 3


class AuditGateFailed(TruError):
    """The audit gate refused an erasure: the model is not promoted, requests need review."""

    exit_code = 4
