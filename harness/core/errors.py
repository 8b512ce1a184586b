"""The one exception type the CLI turns into a one-line message instead of a traceback."""


class HarnessError(Exception):
    """A problem with the user's input or environment (bad name, missing file, ...).

    The message must say what is wrong and, where possible, what to do about it.
    """
