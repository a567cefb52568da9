"""The errors every layer raises and only the command line prints (one line, exit code 2)."""


class UserError(Exception):
    """Bad input a user can fix (config, expression, path, dataset): reported as one line, exit code 2."""


class ExpressionError(UserError, ValueError):
    """A user's expression text or token string is not in the space; the message says what and where."""
