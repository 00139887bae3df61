"""The one exception type that reaches users as a single line instead of a traceback."""


class UserError(Exception):
    """Bad input from the user: a config value, a path, a data file.

    The message is one line naming what was wrong and what is allowed; the CLI
    prints it and exits with status 2. Anything else that escapes is a bug.
    """
