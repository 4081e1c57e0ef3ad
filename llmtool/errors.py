"""The error types users see, each with the exit code of docs/design.md §1.

Raise these for expected failures; `cli.main` prints them as one line on stderr
(`llmtool STAGE: error: MESSAGE`) and exits with the code, never with a traceback.
"""

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_BAD_DATA = 3
EXIT_ENVIRONMENT = 4
EXIT_INTERRUPTED = 130


class LlmtoolError(Exception):
    """An expected failure: the message is shown to the user as is."""

    exit_code = EXIT_RUNTIME


class UsageError(LlmtoolError):
    """Wrong arguments or options (exit 2)."""

    exit_code = EXIT_USAGE


class BadInputError(LlmtoolError):
    """Missing, unreadable, truncated or malformed input data (exit 3)."""

    exit_code = EXIT_BAD_DATA


class EnvironmentProblem(LlmtoolError):
    """A missing optional dependency or an unavailable device (exit 4)."""

    exit_code = EXIT_ENVIRONMENT


def require(module: str, extra: str | None = None):
    """Import an optional dependency, or fail with exit 4 and the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        hint = f"pip install 'llmtool[{extra}]'" if extra else f"pip install {module}"
        raise EnvironmentProblem(f"this needs the Python package '{module}' ({e}); install it with: {hint}")
