"""Conversations and rankings as tables: the layouts people have, read into one shape, checked.

A conversation is a list of messages `{"role": "system"|"user"|"assistant", "content": str}`.
A table row gives one in any of these layouts (the first that fits is used):

- `messages`: a list of `{role, content}` (OpenAI's, what `chat --save` writes);
- `conversations`: ShareGPT/FastChat's list of `{from, value}` (`human`/`gpt`/`system`, also
  `user`/`assistant`/`bot`/`chatgpt`);
- `prompt` + `response` (or `completion`, `output`, `answer`) columns, with an optional `system`.

A conversation must: have at least one assistant message, use only known roles, have no
empty content, put a system message only first, and alternate user and assistant after it
(starting with the user). `conversation(row)` raises `BadConversation` with the reason; a
stage names the row and stops, or counts it under `--skip-bad`.

A ranking row (what `rm-train` reads and `chat --rank` writes) is N >= 2 answers to one
prompt and the rank of each, 0 the best, equal ranks a tie:

    {"prompt": [messages ending with a user turn] or "text",
     "responses": ["answer 1", "answer 2", ...],
     "ranking": [1, 0, ...],                     # ranking[i] is the rank of responses[i]
     ... model, settings, time: optional, passed through}

`chosen` / `rejected` rows (hh-rlhf's layout: both full transcripts "\\n\\nHuman: ...
\\n\\nAssistant: ...", or strings with a separate `prompt`, or message lists) are read as
rankings of two.

    >>> conversation({"prompt": "2+2?", "response": "4"})
    [{'role': 'user', 'content': '2+2?'}, {'role': 'assistant', 'content': '4'}]
    >>> conversation({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]})
    [{'role': 'user', 'content': 'hi'}, {'role': 'assistant', 'content': 'yo'}]
    >>> parse_order("3=1 4 2", 4)     # response 3 and 1 tie for best, then 4, then 2
    [0, 2, 0, 1]
    >>> ranking({"prompt": "Pick", "chosen": "good", "rejected": "bad"})["ranking"]
    [0, 1]
"""

from __future__ import annotations

import json

from llmtool.errors import BadInputError

ROLES = ("system", "user", "assistant")
_FROM = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "bot": "assistant",
         "chatgpt": "assistant", "model": "assistant", "system": "system"}
RESPONSE_COLUMNS = ("response", "completion", "output", "answer")
CONVERSATION_COLUMNS = ("messages", "conversations", "prompt", "chosen")  # any of these makes a table usable


class BadConversation(ValueError):
    """A row that is not a usable conversation (or ranking); the message says why."""


def _text(v, what: str) -> str:
    if not isinstance(v, str):
        raise BadConversation(f"{what} is {type(v).__name__}, not text")
    return v


def _from_messages(msgs, what: str) -> list[dict]:
    if isinstance(msgs, str):  # a JSON string column (some exporters write that)
        try:
            msgs = json.loads(msgs)
        except ValueError:
            raise BadConversation(f"{what} is a string that is not a JSON list of messages")
    if not isinstance(msgs, (list, tuple)):
        raise BadConversation(f"{what} is {type(msgs).__name__}, not a list of messages")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise BadConversation(f"{what}[{i}] is {type(m).__name__}, not a message")
        if "role" in m:
            role, content = m.get("role"), m.get("content")
        elif "from" in m:
            raw = m.get("from")
            role = _FROM.get(str(raw).lower(), raw) if isinstance(raw, str) else raw
            content = m.get("value")
        else:
            raise BadConversation(f"{what}[{i}] has neither role/content nor from/value")
        if not isinstance(role, str):
            raise BadConversation(f"{what}[{i}]: role {role!r} is not text")
        out.append({"role": role.lower(), "content": _text(content, f"{what}[{i}] content")})
    return out


def messages_of(row: dict) -> list[dict]:
    """The row's messages in whichever layout it has, unchecked (see `check`)."""
    if row.get("messages") is not None:
        return _from_messages(row["messages"], "messages")
    if row.get("conversations") is not None:
        return _from_messages(row["conversations"], "conversations")
    if row.get("prompt") is not None:
        col = next((c for c in RESPONSE_COLUMNS if row.get(c) is not None), None)
        if col is None:
            raise BadConversation(f"a prompt without a response (no {'/'.join(RESPONSE_COLUMNS)} column)")
        msgs = prompt_messages(row["prompt"])
        if row.get("system"):
            msgs = [{"role": "system", "content": _text(row["system"], "system")}] + msgs
        return msgs + [{"role": "assistant", "content": _text(row[col], col)}]
    raise BadConversation("no conversation: expected a messages, conversations or prompt/response column")


def prompt_messages(prompt) -> list[dict]:
    """A prompt given as text (one user turn) or as a list of messages."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return _from_messages(prompt, "prompt")


def check(msgs: list[dict], *, need_assistant: bool = True, end_with: str | None = None) -> list[dict]:
    """`msgs` if it is a well-formed conversation, else BadConversation saying why."""
    if not msgs:
        raise BadConversation("an empty conversation")
    for i, m in enumerate(msgs):
        if m["role"] not in ROLES:
            raise BadConversation(f"message {i}: unknown role {m['role']!r} (expected system, user or assistant)")
        if not m["content"].strip():
            raise BadConversation(f"message {i} ({m['role']}) has empty content")
        if m["role"] == "system" and i > 0:
            raise BadConversation(f"message {i}: a system message after the start")
    body = msgs[1:] if msgs[0]["role"] == "system" else msgs
    for i, m in enumerate(body):
        want = "user" if i % 2 == 0 else "assistant"
        if m["role"] != want:
            where = i + (len(msgs) - len(body))
            if i > 0 and m["role"] == body[i - 1]["role"]:
                raise BadConversation(f"message {where}: two {m['role']} messages in a row")
            raise BadConversation(f"message {where}: expected a {want} message, got {m['role']} "
                                  "(a conversation starts with the user and alternates)")
    if need_assistant and not any(m["role"] == "assistant" for m in msgs):
        raise BadConversation("no assistant message (nothing to learn)")
    if end_with is not None and msgs[-1]["role"] != end_with:
        raise BadConversation(f"the conversation must end with a {end_with} message, not {msgs[-1]['role']}")
    return msgs


def conversation(row: dict) -> list[dict]:
    """The checked conversation of a table row (BadConversation if it is not one)."""
    return check(messages_of(row))


# ---------------------------------------------------------------- rankings


def parse_order(text: str, n: int) -> list[int]:
    """A person's order of n numbered answers, best first ("3 1 4 2"; "3=1 4 2" ties 3 and 1),
    as the rank of each answer (0 = best). Every answer must appear exactly once."""
    groups = [g for g in text.replace(",", " ").split() if g]
    ranks: dict[int, int] = {}
    for rank, g in enumerate(groups):
        for part in g.split("="):
            if not part.isdigit() or not 1 <= int(part) <= n:
                raise ValueError(f"{part!r} is not an answer number (1-{n})")
            k = int(part) - 1
            if k in ranks:
                raise ValueError(f"answer {k + 1} appears twice")
            ranks[k] = rank
    missing = [str(k + 1) for k in range(n) if k not in ranks]
    if missing:
        raise ValueError(f"answer(s) {', '.join(missing)} missing: rank all {n}")
    return [ranks[k] for k in range(n)]


def _split_transcript(text: str) -> tuple[list[dict], str]:
    """hh-rlhf's "\\n\\nHuman: ...\\n\\nAssistant: ..." transcript -> (prompt messages, last answer)."""
    import re

    parts = re.split(r"\n\n(Human|Assistant): ?", "\n\n" + text.lstrip("\n"))
    msgs = [{"role": "user" if who == "Human" else "assistant", "content": body.strip()}
            for who, body in zip(parts[1::2], parts[2::2])]
    if len(msgs) < 2 or msgs[-1]["role"] != "assistant":
        raise BadConversation("a chosen/rejected transcript that does not end with an Assistant turn")
    return msgs[:-1], msgs[-1]["content"]


def _pair(row: dict) -> tuple[list[dict], list[str]]:
    chosen, rejected = row.get("chosen"), row.get("rejected")
    if chosen is None or rejected is None:
        raise BadConversation("a chosen column without rejected (or the other way round)")
    if row.get("prompt") is not None:
        prompt = prompt_messages(row["prompt"])
        answers = []
        for name, v in (("chosen", chosen), ("rejected", rejected)):
            if isinstance(v, str):
                answers.append(v)
            else:
                msgs = _from_messages(v, name)
                if not msgs or msgs[-1]["role"] != "assistant":
                    raise BadConversation(f"{name} does not end with an assistant message")
                answers.append(msgs[-1]["content"])
        return prompt, answers
    if isinstance(chosen, str) and isinstance(rejected, str):
        p1, a1 = _split_transcript(chosen)
        p2, a2 = _split_transcript(rejected)
        if p1 != p2:
            raise BadConversation("chosen and rejected transcripts have different prompts")
        return p1, [a1, a2]
    c, r = _from_messages(chosen, "chosen"), _from_messages(rejected, "rejected")
    if c[:-1] != r[:-1] or not c or c[-1]["role"] != "assistant" or r[-1]["role"] != "assistant":
        raise BadConversation("chosen and rejected must share the prompt and end with an assistant message")
    return c[:-1], [c[-1]["content"], r[-1]["content"]]


def ranking(row: dict) -> dict:
    """The checked ranking of a table row: {"prompt": messages, "responses": [str], "ranking": [int]}
    (ranks 0 = best; a chosen/rejected pair is [0, 1]). BadConversation if it is not one."""
    if row.get("responses") is None and row.get("chosen") is not None:
        prompt, responses = _pair(row)
        ranks = [0, 1]
    else:
        if row.get("prompt") is None:
            raise BadConversation("no prompt (expected prompt, responses, ranking or chosen/rejected columns)")
        prompt = prompt_messages(row["prompt"])
        responses, ranks = row.get("responses"), row.get("ranking")
        if not isinstance(responses, (list, tuple)):
            raise BadConversation("responses is not a list of answers")
        responses = [_text(r, f"responses[{i}]") for i, r in enumerate(responses)]
        if not isinstance(ranks, (list, tuple)):
            raise BadConversation("ranking is not a list of ranks")
        if len(responses) < 2:
            raise BadConversation(f"{len(responses)} response(s): a ranking needs at least 2")
        if len(ranks) != len(responses):
            raise BadConversation(f"{len(responses)} responses but {len(ranks)} ranks")
        if not all(isinstance(r, int) and not isinstance(r, bool) and r >= 0 for r in ranks):
            raise BadConversation(f"ranking {list(ranks)} is not a list of ranks >= 0")
        ranks = _dense(list(ranks))
    check(prompt, need_assistant=False, end_with="user")
    for i, r in enumerate(responses):
        if not r.strip():
            raise BadConversation(f"response {i} is empty")
    if len(set(ranks)) < 2:
        raise BadConversation("every response has the same rank: nothing to learn")
    return {"prompt": prompt, "responses": list(responses), "ranking": ranks}


def _dense(ranks: list[int]) -> list[int]:
    """Ranks renumbered 0, 1, 2 ... keeping ties and order ([0, 2, 2, 5] -> [0, 1, 1, 2])."""
    order = {r: i for i, r in enumerate(sorted(set(ranks)))}
    return [order[r] for r in ranks]


def read_rows(path: str, columns=CONVERSATION_COLUMNS):
    """(row number, row dict) of a table (any format llmtool reads) that has one of `columns`."""
    from llmtool.io.tables import open_table

    t = open_table(path, require=())
    names = set(t.schema.names)
    if not names.intersection(columns):
        raise BadInputError(f"{path}: no conversation columns (expected one of {', '.join(columns)}; "
                            f"it has {', '.join(sorted(names)) or 'none'})")
    n = 0
    for batch in t.batches():
        for row in batch.to_pylist():
            yield n, row
            n += 1


def load(path: str, parse, skip_bad: bool = False, what: str = "conversation"):
    """Every row of `path` through `parse` (conversation or ranking): (items, rows, skipped by
    reason). A bad row stops with its row number unless `skip_bad`."""
    items, rows, skipped = [], [], {}
    for i, row in read_rows(path):
        try:
            items.append(parse(row))
            rows.append(row)
        except BadConversation as e:
            if not skip_bad:
                raise BadInputError(f"{path}: row {i}: {e} (fix the row, or pass --skip-bad to skip and count "
                                    f"bad {what}s)")
            import re

            reason = re.sub(r"^message \d+:? ", "", str(e))  # counted by kind, not by position
            skipped[reason] = skipped.get(reason, 0) + 1
    return items, rows, skipped
