"""The one error type for mistakes a user can make and fix.

The API raises :class:`SeqkitError` with a message that says what went wrong and what to
do; the CLI prints that message as one line and exits 1, with no traceback.
"""


class SeqkitError(Exception):
    """A user-caused problem (bad file, bad option value, missing data) with a fix to suggest."""
