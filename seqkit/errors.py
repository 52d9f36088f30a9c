"""The one error type for mistakes a user can make and fix.

The API raises :class:`SeqkitError` with a message that says what went wrong and what to
do. A message names the API's own parameters in backquotes (```top_p` must be in (0, 1]``);
the CLI prints it as one line, each such name phrased as its flag (``--top-p``), and exits
1, with no traceback.
"""


class SeqkitError(Exception):
    """A user-caused problem (bad file, bad option value, missing data) with a fix to suggest."""
