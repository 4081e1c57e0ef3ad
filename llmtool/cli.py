"""The `llmtool` command: registers every stage and maps errors to exit codes (docs/design.md §1).

Stage modules are imported here, so they must stay light (no torch at import time);
`python -m llmtool --help` is checked by a test to leave torch unimported.
"""

from __future__ import annotations

import importlib
import signal
import sys

import typer

from llmtool import __version__
from llmtool.errors import EXIT_INTERRUPTED, EXIT_RUNTIME, EXIT_USAGE, LlmtoolError

# (module under llmtool.stages, command name, help panel), in pipeline order.
# A stage whose module does not exist yet is simply absent from the CLI.
STAGES = [
    ("fetch", "fetch", "Data"),
    ("filter", "filter", "Data"),
    ("dedup", "dedup", "Data"),
    ("convert", "convert", "Data"),
    ("bpe_train", "bpe-train", "Tokenizer"),
    ("tokenize", "tokenize", "Tokenizer"),
    ("merge", "merge", "Tokenizer"),
    ("pretrain", "pretrain", "Training"),
    ("sft", "sft", "Training"),
    ("rm_train", "rm-train", "Training"),
    ("score", "score", "Training"),
    ("rl", "rl", "Training"),
    ("sample", "sample", "Inference"),
    ("chat", "chat", "Inference"),
    ("serve", "serve", "Inference"),
    ("eval", "eval", "Inspect"),
    ("info", "info", "Inspect"),
    ("cat", "cat", "Inspect"),
    ("head", "head", "Inspect"),
    ("plot", "plot", "Inspect"),
    ("export", "export", "Export"),
]

app = typer.Typer(
    name="llmtool",
    help="The LLM pipeline from raw web data to a chat model, as composable commands.\n\n"
    "Example: llmtool fetch crawl.warc.gz | llmtool filter - | llmtool dedup - -o clean.parquet",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"llmtool {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    pass


_NO_ARGS_HELP: set[str] = set()  # commands that show their help when called with no arguments


def _register() -> None:
    for module_name, command, panel in STAGES:
        try:
            module = importlib.import_module(f"llmtool.stages.{module_name}")
        except ModuleNotFoundError as e:
            if e.name == f"llmtool.stages.{module_name}":
                continue  # not built yet: absent, never faked
            raise
        no_args_help = getattr(module, "NO_ARGS_HELP", True)
        if no_args_help:
            _NO_ARGS_HELP.add(command)
        app.command(name=command, rich_help_panel=panel, no_args_is_help=no_args_help)(module.run)


_register()


def _on_sigterm(signum, frame):
    # Treat like Ctrl-C: context managers remove partial outputs, training checkpoints.
    raise KeyboardInterrupt


def _click_exceptions():
    """The click exception modules in play: typer >= 0.28 raises its bundled copy of click's
    classes, older typer raises the installed click's; a parse error may come from either."""
    modules = []
    try:
        from typer import _click

        modules.append(_click.exceptions)
    except ImportError:
        pass
    try:
        import click.exceptions

        modules.append(click.exceptions)
    except ImportError:
        pass
    return modules


def _help_on_stderr(args: list[str]) -> None:
    """`llmtool` or `llmtool STAGE` alone: the help, on stderr (stdout is for data), exit 2 as
    click does. typer's rich help prints to stdout by itself, hence the redirect."""
    import contextlib

    with contextlib.redirect_stdout(sys.stderr):
        try:
            app(args=[*args, "--help"], standalone_mode=False)
        except Exception:  # the help is a courtesy: never a traceback for it
            pass
    sys.exit(EXIT_USAGE)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv: list[str] | None = None) -> None:
    signal.signal(signal.SIGTERM, _on_sigterm)
    args = argv if argv is not None else sys.argv[1:]
    stage = next((a for a in args if not a.startswith("-")), "")
    if stage not in {command for _, command, _ in STAGES}:
        stage = ""
    prefix = f"llmtool {stage}".strip()
    modules = _click_exceptions()
    no_args_help, usage_errors, click_errors, aborts = (
        tuple(getattr(m, name) for m in modules if hasattr(m, name))
        for name in ("NoArgsIsHelpError", "UsageError", "ClickException", "Abort"))
    if not args or (len(args) == 1 and args[0] in _NO_ARGS_HELP):
        _help_on_stderr(args)
    try:
        code = app(args=argv, standalone_mode=False)
        if code == EXIT_INTERRUPTED:  # typer turns KeyboardInterrupt into Exit(130)
            print(f"{prefix}: interrupted", file=sys.stderr)
        sys.exit(code if isinstance(code, int) else 0)
    except LlmtoolError as e:
        print(f"{prefix}: error: {_one_line(e)}", file=sys.stderr)
        sys.exit(e.exit_code)
    except no_args_help:
        # Reached only if a command's help was not handled above; its text is already printed
        sys.exit(EXIT_USAGE)
    except usage_errors as e:
        # The parser's own errors (unknown option or command, a bad value): one line, exit 2
        command = e.ctx.command_path if getattr(e, "ctx", None) is not None else prefix
        print(f"{prefix}: error: {_one_line(e.format_message())} (see '{command} --help')",
              file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except click_errors as e:
        print(f"{prefix}: error: {_one_line(e.format_message())}", file=sys.stderr)
        sys.exit(e.exit_code if e.exit_code else EXIT_USAGE)
    except aborts:
        print(f"{prefix}: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, without a traceback at exit.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(EXIT_RUNTIME)
    except MemoryError:
        print(f"{prefix}: error: out of memory (use a smaller batch, --limit or more shards)",
              file=sys.stderr)
        sys.exit(EXIT_RUNTIME)
