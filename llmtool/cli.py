"""The `llmtool` command: registers every stage and maps errors to exit codes (DESIGN §1).

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
    ("bpe_train", "bpe-train", "Tokenizer"),
    ("tokenize", "tokenize", "Tokenizer"),
    ("pretrain", "pretrain", "Training"),
    ("sft", "sft", "Training"),
    ("rm_train", "rm-train", "Training"),
    ("rl", "rl", "Training"),
    ("sample", "sample", "Inference"),
    ("chat", "chat", "Inference"),
    ("info", "info", "Inspect"),
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


def _register() -> None:
    for module_name, command, panel in STAGES:
        try:
            module = importlib.import_module(f"llmtool.stages.{module_name}")
        except ModuleNotFoundError as e:
            if e.name == f"llmtool.stages.{module_name}":
                continue  # not built yet: absent, never faked
            raise
        app.command(name=command, rich_help_panel=panel, no_args_is_help=getattr(module, "NO_ARGS_HELP", True))(
            module.run
        )


_register()


def _on_sigterm(signum, frame):
    # Treat like Ctrl-C: context managers remove partial outputs, training checkpoints.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    import click

    signal.signal(signal.SIGTERM, _on_sigterm)
    stage = next((a for a in (argv if argv is not None else sys.argv[1:]) if not a.startswith("-")), "")
    try:
        code = app(args=argv, standalone_mode=False)
        if code == EXIT_INTERRUPTED:  # typer turns KeyboardInterrupt into Exit(130)
            print(f"llmtool {stage}: interrupted", file=sys.stderr)
        sys.exit(code if isinstance(code, int) else 0)
    except LlmtoolError as e:
        print(f"llmtool {stage}: error: {e}".replace("  ", " "), file=sys.stderr)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        print(f"llmtool {stage}: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code if e.exit_code else EXIT_USAGE)
    except KeyboardInterrupt:
        print(f"llmtool {stage}: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, without a traceback at exit.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(EXIT_RUNTIME)
    except MemoryError:
        print(f"llmtool {stage}: error: out of memory (use a smaller batch, --limit or more shards)",
              file=sys.stderr)
        sys.exit(EXIT_RUNTIME)
