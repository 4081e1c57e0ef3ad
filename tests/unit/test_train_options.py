"""Training options are declared once (llmtool.stages.training): the typer command, the
TrainConfig, the provenance's semantic settings and the resume rules all come from the
dataclass fields, so a new stage option is one field plus its use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pytest
import typer
from typer.testing import CliRunner

from llmtool.errors import UsageError
from llmtool.stages.training import (
    TrainOptions,
    apply_checkpoint_settings,
    argument,
    command,
    count,
    default_output,
    duration,
    option,
)


@dataclass(kw_only=True)
class ToyOptions(TrainOptions):
    data: str = argument("Input.", path=True)
    beta: float = option(0.1, "--beta", min=0.0, semantic=True, help="A new stage option.")
    matrix_lr: Optional[float] = option(0.002, "--lr", min=0.0, semantic=True, help="Another default.")


def _cli(fn):
    app = typer.Typer()
    app.command()(command(ToyOptions, fn))
    app.command("other")(lambda: None)  # two commands: typer then expects the command's name
    return app


def test_one_field_is_an_option_a_config_value_and_a_setting():
    got = {}

    def toy(o: ToyOptions) -> None:
        """Toy stage."""
        got["o"] = o

    r = CliRunner().invoke(_cli(toy), ["toy", "in.txt", "--beta", "0.5", "--max-tokens", "2k", "--seed", "0"])
    assert r.exit_code == 0, r.output
    o = got["o"]
    assert (o.data, o.beta, o.parsed("max_tokens")) == ("in.txt", 0.5, 2000)
    assert o.given == {"data", "beta", "max_tokens", "seed"}  # --seed 0 was typed, though it is the default
    cfg = o.train_config(context=64)
    assert (cfg.max_tokens, cfg.matrix_lr, cfg.context, cfg.seed) == (2000, 0.002, 64, 0)
    assert {"beta", "matrix_lr", "seed"} <= o.semantic_names() and "log_every" not in o.semantic_names()
    s = o.settings()
    assert s["beta"] == 0.5 and s["data"].endswith("/in.txt") and s["data"].startswith("/")
    assert "force" not in s and "output" not in s and "resume" not in s
    help_text = CliRunner().invoke(_cli(toy), ["toy", "--help"]).output
    assert "--beta" in help_text and "A new stage option." in help_text and "--max-steps" in help_text


def test_resume_takes_settings_from_the_checkpoint():
    saved = {"data": "/d/in.txt", "beta": 0.3, "seed": 7, "max_steps": None, "max_tokens": 5000,
             "max_time": 1800.0, "log_every": 5, "micro_batch": 8}
    o = ToyOptions(data="/d/in.txt", given=frozenset({"data"}))
    assert apply_checkpoint_settings(o, saved) == []
    assert (o.beta, o.seed, o.max_tokens, o.max_time, o.log_every) == (0.3, 7, 5000, 1800.0, 5)
    # a setting that changes the weights cannot change on resume
    o = ToyOptions(data="/d/in.txt", beta=0.4, given=frozenset({"data", "beta"}))
    with pytest.raises(UsageError, match=r"--beta 0.4 contradicts the checkpoint, which was trained with 0.3"):
        apply_checkpoint_settings(o, saved)
    # the budget may change; given anew, it replaces the whole saved budget
    o = ToyOptions(data="/d/in.txt", max_steps=50, log_every=1, given=frozenset({"data", "max_steps", "log_every"}))
    notes = apply_checkpoint_settings(o, saved)
    assert notes == ["--max-steps 50 (the checkpoint had none)", "--log-every 1 (the checkpoint had 5)"]
    assert (o.max_steps, o.max_tokens, o.max_time, o.beta) == (50, None, None, 0.3)
    # the same value given again is no contradiction
    o = ToyOptions(data="/d/in.txt", seed=7, given=frozenset({"data", "seed"}))
    assert apply_checkpoint_settings(o, saved) == []


def test_counts_durations_and_output_names():
    assert count("512k", "--x") == 512_000 and count("1.5B", "--x") == 1_500_000_000 and count(7, "--x") == 7
    assert duration("90s") == 90 and duration("1.5h") == 5400
    for bad in ("lots", "0", "1.2.3k"):
        with pytest.raises(UsageError, match="--x"):
            count(bad, "--x")
    with pytest.raises(UsageError, match="--max-time"):
        duration("0")
    assert default_output("/data/web.bin", "pretrain").endswith("web.pretrain")
    assert default_output("/runs/base/", "sft").endswith("/runs/base.sft") or default_output("/runs/base/", "sft") \
        == "base.sft"
