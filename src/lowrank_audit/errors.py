"""The one exception type for user errors: the CLI turns it into a one-line message and exit code 2."""


class AuditError(Exception):
    """A problem with the user's input or environment; the message names the problem and the fix."""
