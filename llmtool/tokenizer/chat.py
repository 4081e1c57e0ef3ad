"""The chat format: how a conversation becomes tokens, and which of them a model learns.

One function renders conversations for every stage (sft trains on it, rl and chat and serve
prompt with it, rm-train scores with it), so the formats can never drift apart:

    <bos><|im_start|>system<|im_sep|>Be brief<|im_end|><|im_start|>user<|im_sep|>2+2?<|im_end|>
    <|im_start|>assistant<|im_sep|>4<|im_end|>

(no newlines between messages; <bos> is the tokenizer's BOS token, as at every pretraining
document's start). Roles are encoded as ordinary text; content is encoded as ordinary text
too, so a user who types "<|im_end|>" gets those characters, never the special token.

The mask marks what a model is trained to produce: the content of each assistant message and
the <|im_end|> that closes it. The role headers, user and system messages are context.

    >>> from llmtool.tokenizer.file import Tokenizer
    >>> tok = Tokenizer("bytes", r"\\S+|\\s+", {bytes([i]): i for i in range(256)},
    ...                 {"<|endoftext|>": 256}).with_special_tokens(list(CHAT_TOKENS))
    >>> fmt = ChatFormat(tok)
    >>> r = fmt.render([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
    >>> fmt.tokenizer.decode(r.ids)
    '<|endoftext|><|im_start|>user<|im_sep|>hi<|im_end|><|im_start|>assistant<|im_sep|>yo<|im_end|>'
    >>> fmt.tokenizer.decode([t for t, m in zip(r.ids, r.mask) if m])
    'yo<|im_end|>'
    >>> fmt.tokenizer.decode(fmt.prompt([{"role": "user", "content": "hi"}]))[-31:]
    '<|im_start|>assistant<|im_sep|>'
"""

from __future__ import annotations

from dataclasses import dataclass

from llmtool.errors import BadInputError

IM_START, IM_SEP, IM_END = "<|im_start|>", "<|im_sep|>", "<|im_end|>"
CHAT_TOKENS = (IM_START, IM_SEP, IM_END)
ROLES = ("system", "user", "assistant")
TEMPLATE = "llmtool-im-v1"  # the name of this format, stored in chat tokenizers and checkpoints


def has_chat_tokens(tok) -> bool:
    return all(t in tok.special_tokens for t in CHAT_TOKENS)


@dataclass
class Rendered:
    """A rendered conversation: token ids, and per token whether it is supervised."""

    ids: list[int]
    mask: list[bool]
    # (start, end) token spans of each message's content (+ its <|im_end|>), in message order
    spans: list[tuple[int, int]]

    @property
    def n_supervised(self) -> int:
        return sum(self.mask)


class ChatFormat:
    """Renders conversations with `tok`'s chat tokens (see the module docstring).

    `messages` are dicts with `role` (system, user or assistant) and `content` (a string);
    they are rendered as given (checking a conversation is llmtool.data.conversations' job).
    """

    def __init__(self, tok):
        if not has_chat_tokens(tok):
            missing = ", ".join(t for t in CHAT_TOKENS if t not in tok.special_tokens)
            raise BadInputError(f"tokenizer {tok.name} has no chat tokens ({missing}); "
                                "a model gets them from `llmtool sft`")
        self.tokenizer = tok
        self.start, self.sep, self.end = (tok.special_tokens[t] for t in CHAT_TOKENS)
        self.bos = [tok.bos_id] if tok.bos_id is not None else []
        self._roles = {r: tok.encode(r) for r in ROLES}
        self.stop_ids = (self.end,) + ((tok.eot_id,) if tok.eot_id is not None else ())

    def header(self, role: str) -> list[int]:
        ids = self._roles.get(role)
        if ids is None:
            ids = self.tokenizer.encode(role)
        return [self.start, *ids, self.sep]

    def render(self, messages: list[dict], train_on: str = "assistant") -> Rendered:
        """The whole conversation; `train_on` = "assistant" (every assistant message) or "last"
        (only the final one, e.g. the response a reward model scores)."""
        ids = list(self.bos)
        mask = [False] * len(ids)
        spans = []
        last = len(messages) - 1
        for i, m in enumerate(messages):
            head = self.header(m["role"])
            ids += head
            mask += [False] * len(head)
            body = self.tokenizer.encode(m["content"]) + [self.end]
            supervised = m["role"] == "assistant" and (train_on == "assistant" or i == last)
            spans.append((len(ids), len(ids) + len(body)))
            ids += body
            mask += [supervised] * len(body)
        return Rendered(ids, mask, spans)

    def prompt(self, messages: list[dict], role: str = "assistant") -> list[int]:
        """The tokens that ask for the next `role` message: the conversation, then its header."""
        return self.render(messages).ids + self.header(role)

    def reply_text(self, ids) -> str:
        """A generated reply as text, without the stop token that ended it."""
        ids = list(ids)
        if ids and ids[-1] in self.stop_ids:
            ids = ids[:-1]
        return self.tokenizer.decode(ids)
