"""Errors that end the program with exit code 2 and a one-line message."""


class UsageError(Exception):
    """Bad usage or state the user can fix; `str()` is the whole message."""
