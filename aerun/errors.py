"""The exceptions that reach users as a single line instead of a traceback.

`UserError` is bad input (exit status 2); `EnvironmentFailure` is a failing
environment — a full disk, a run another process is training, a cluster job
that died (exit status 1). The CLI prints either as one `aerun: error:` line;
anything else that escapes is caught once, at the top (`aerun.failures`).
"""


class UserError(Exception):
    """Bad input from the user: a config value, a path, a data file.

    The message is one line naming what was wrong and what is allowed; the CLI
    prints it and exits with status 2.
    """


class EnvironmentFailure(Exception):
    """The input was fine but the environment failed it; one line saying what to do, exit status 1."""
