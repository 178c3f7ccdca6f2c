"""Errors a user can cause: the CLI prints them as one line and exits non-zero."""


class UserError(Exception):
    """Bad input (a missing file, a malformed line, an impossible setting).

    The message names the file (and line) and, where there is one, the fix.
    """
