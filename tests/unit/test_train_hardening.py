"""Training hardening (issues 10 and 11): damaged train states, corrupt token files (checked up
front or in the background), Ctrl-C said at once, out of memory as one error with flag names."""

from __future__ import annotations

import os
import signal
import struct

import numpy as np
import pytest
import torch

from llmtool.errors import BadInputError, EnvironmentProblem, UsageError
from llmtool.io.tokfile import TokenFile, TokenFileWriter
from llmtool.model import checkpoint
from llmtool.model.gpt import GPT, GPTConfig
from llmtool.train.batch import Batch
from llmtool.train.data import TokenWindows, Verification
from llmtool.train.device import setup
from llmtool.train.errors import OutOfMemory
from llmtool.train.loop import TrainConfig, Trainer, check_train_state, make_plan
from llmtool.train.report import Reporter


def _tokens(path, n=4000, vocab=64, seed=0):
    rng = np.random.default_rng(seed)
    with TokenFileWriter(path, vocab_size=vocab) as w:
        for _ in range(0, n, 100):
            w.add_document(rng.integers(0, vocab, 100))
    return path


def _flip(path, at=500):
    data = bytearray(path.read_bytes())
    data[struct.unpack_from("<Q", data, 8)[0] + at] ^= 0x01
    path.write_bytes(bytes(data))


def _model():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=64, n_layer=1, n_embd=32, n_head=2, n_kv_head=2, context=16))


def _trainer(src, out, **kw):
    rep = Reporter("test")
    rep.quiet = kw.pop("quiet", True)
    cfg = TrainConfig(context=16, micro_batch=2, max_steps=kw.pop("max_steps", 3), log_every=1)
    return Trainer(_model(), cfg, setup("cpu"), src, out, reporter=rep, **kw)


@pytest.mark.parametrize("state, what", [([1, 2], "not a train state"), ({"tokens": 0}, "'step'"),
                                         ({"step": -1, "tokens": 0, "elapsed": 0.0, "optimizers": [],
                                           "rng": {"torch": torch.zeros(2)}}, "'step'"),
                                         ({"step": 1, "tokens": 0, "elapsed": 0.0, "optimizers": [],
                                           "rng": {}}, "RNG")])
def test_damaged_train_states_are_bad_input(state, what):
    with pytest.raises(BadInputError, match=what):
        check_train_state(state, "x/train_state.pt")


def test_resume_state_checks_the_file(tmp_path):
    from llmtool.stages.training import resume_state

    m = _model()
    checkpoint.save(tmp_path / "c", m, train_state=[1, 2, 3])
    with pytest.raises(BadInputError, match="not a train state"):
        resume_state(tmp_path / "c")


def test_ids_beyond_the_vocabulary_are_an_error_not_an_index_error(tmp_path):
    p = _tokens(tmp_path / "t.bin")
    data = bytearray(p.read_bytes())
    struct.pack_into("<Q", data, 24, 10)  # the header now says vocab 10; ids go up to 63
    p.write_bytes(bytes(data))
    src = TokenWindows(p, context=16)
    with pytest.raises(BadInputError, match="outside the vocabulary"):
        src.batch(0, 0, 4)
    with pytest.raises(BadInputError, match="outside the vocab"):
        Verification([TokenFile(p)])


def test_a_bit_flip_is_found_up_front_or_in_the_background(tmp_path):
    p = _tokens(tmp_path / "t.bin")
    _flip(p)
    with pytest.raises(BadInputError, match="checksum"):
        Verification([TokenFile(p)])
    v = Verification([TokenFile(p)], background=True)  # what a file over 1 GiB gets
    with pytest.raises(BadInputError, match="checksum"):
        v.check(wait=True)
    assert v.done and v.background


def test_training_on_a_file_still_being_verified_never_checkpoints_bad_data(tmp_path):
    p = _tokens(tmp_path / "t.bin")
    _flip(p)
    tf = TokenFile(p)
    src = TokenWindows(p, context=16, tokfile=tf, verification=Verification([tf], background=True))
    out = tmp_path / "run"
    with pytest.raises(BadInputError, match="checksum"):
        _trainer(src, out).run()
    assert not out.exists()
    ok = _tokens(tmp_path / "ok.bin")
    tf = TokenFile(ok)
    src = TokenWindows(ok, context=16, tokfile=tf, verification=Verification([tf], background=True))
    assert _trainer(src, tmp_path / "ok").run()["steps"] == 3


class _Interrupting(TokenWindows):
    """Sends itself SIGINT during micro-batch 0 of step 1 and looks at stderr during micro-batch 1:
    the step is not over yet, the message must be there already."""

    seen = None

    def __init__(self, *a, capfd, **kw):
        super().__init__(*a, **kw)
        self.capfd = capfd

    def batch(self, step, micro, *a, **kw):
        if step == 1 and micro == 0:
            os.kill(os.getpid(), signal.SIGINT)
        if step == 1 and micro == 1:
            _Interrupting.seen = self.capfd.readouterr().err
        return super().batch(step, micro, *a, **kw)


def test_ctrl_c_is_acknowledged_at_once_then_checkpoints(tmp_path, capfd):
    src = _Interrupting(_tokens(tmp_path / "t.bin"), context=16, capfd=capfd)
    rep = Reporter("test")
    rep.quiet = False
    cfg = TrainConfig(context=16, micro_batch=2, total_batch=64, max_steps=5, log_every=0)  # 2 micro-batches
    t = Trainer(_model(), cfg, setup("cpu"), src, tmp_path / "run", reporter=rep)
    with pytest.raises(KeyboardInterrupt):
        t.run()
    assert "stopping after this step" in _Interrupting.seen
    assert checkpoint.load_train_state(tmp_path / "run")["step"] == 2  # step 1 (0-based) was finished


def test_out_of_memory_during_training_is_exit_4_with_the_flags(tmp_path):
    from llmtool.stages.pretrain import PretrainOptions
    from llmtool.stages.training import flag_errors

    def oom(model, batch):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    src = TokenWindows(_tokens(tmp_path / "t.bin"), context=16)
    with pytest.raises(OutOfMemory) as e:
        _trainer(src, tmp_path / "run", loss_fn=oom).run()
    assert isinstance(e.value, EnvironmentProblem) and e.value.exit_code == 4
    assert "--" not in str(e.value)  # library code names settings in words
    with pytest.raises(OutOfMemory, match=r"\(see --micro-batch, --context, --depth\)"):
        with flag_errors(PretrainOptions):
            raise e.value


def test_library_errors_name_settings_and_the_stage_adds_flags():
    from llmtool.stages.pretrain import PretrainOptions
    from llmtool.stages.training import flag_errors

    with pytest.raises(UsageError) as e:
        make_plan(_model(), TrainConfig(context=16, micro_batch=2))
    assert "budget" in str(e.value) and "--" not in str(e.value)
    with pytest.raises(UsageError, match="--max-steps, --max-tokens, --max-time"):
        with flag_errors(PretrainOptions):
            raise e.value


def test_metrics_and_batches_must_be_well_formed(tmp_path):
    src = TokenWindows(_tokens(tmp_path / "t.bin"), context=16)

    def reserved(model, batch):
        return model(batch.inputs, batch.targets), {"lr": 1.0}

    with pytest.raises(ValueError, match="reserved"):
        _trainer(src, tmp_path / "r", loss_fn=reserved).run()
    b = Batch(torch.zeros(2, 3, dtype=torch.long), extra={"pairs": 1, "adv": torch.ones(2)})
    assert b.to(torch.device("cpu")).extra["pairs"] == 1
