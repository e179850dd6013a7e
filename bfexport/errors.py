"""The one exception type for user mistakes (bad files, bad options)."""


class BfexportError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits 2, no traceback."""
