"""Public post-training datasets as conversation rows (`{"messages": [...]}`) for `sft` and `rl`.

Each converter takes the records of one source file (`records(path)`: JSONL, gzipped or not,
or one JSON array) and yields rows; `convert` names them:

- `oasst`: OpenAssistant message trees. From the prompt, follow the reply ranked best
  (`rank` 0, else the first reviewed one) at every level: one human-written dialogue per tree,
  the best-ranked path. Deleted or review-rejected messages are never taken.
- `identity`: FastChat's "who are you" conversations, with the assistant's name and maker
  replaced (`Vicuna` -> NAME, `Large Model Systems Organization (LMSYS)` -> ORG), so a model
  finetuned on them names itself after this project.
- `self-instruct`: the seed tasks; each instance is a user turn (instruction, then the input
  if any) and the output as the answer.
- `gsm8k`: a math word problem and its worked solution. The `<<48/2=24>>` calculator
  annotations are kept as they are (the tool-use format), and the final number after `####`
  is kept in an `answer` column, with the problem in `prompt`, for `rl`'s `answer` reward.

    >>> row = next(gsm8k([{"question": "2+3?", "answer": "2+3=<<2+3=5>>5\\n#### 5"}]))
    >>> row["messages"][1]["content"], row["answer"]
    ('2+3=<<2+3=5>>5\\n#### 5', '5')
    >>> next(identity([{"conversations": [{"from": "human", "value": "Who are you?"},
    ...     {"from": "gpt", "value": "I am Vicuna, by Large Model Systems Organization (LMSYS)."}]}]))["messages"][1]
    {'role': 'assistant', 'content': 'I am llmtool, by the llmtool project.'}
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterable, Iterator

from llmtool.data.conversations import BadConversation, check
from llmtool.errors import BadInputError

NAME, ORG = "llmtool", "the llmtool project"


def records(path: str) -> Iterator[dict]:
    """The JSON objects of a JSONL file (gzipped or not) or of a file holding one JSON array."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such file")
    except IsADirectoryError:
        raise BadInputError(f"{path}: is a folder, not a file")
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise BadInputError(f"{path}: damaged gzip data ({e})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInputError(f"{path}: not UTF-8 text")
    if not text.strip():
        raise BadInputError(f"{path}: empty file")
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except (ValueError, RecursionError) as e:
            raise BadInputError(f"{path}: invalid JSON ({e})")
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise BadInputError(f"{path}: item {i} is not a JSON object")
            yield item
        return
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except (ValueError, RecursionError) as e:
            raise BadInputError(f"{path}:{n}: invalid JSON ({e})")
        if not isinstance(item, dict):
            raise BadInputError(f"{path}:{n}: not a JSON object")
        yield item


def _field(rec: dict, name: str, what: str) -> str:
    v = rec.get(name)
    if not isinstance(v, str) or not v.strip():
        raise BadConversation(f"{what}: no text in {name!r}")
    return v


# ---------------------------------------------------------------- OpenAssistant


def _usable(msg: dict) -> bool:
    return (isinstance(msg, dict) and isinstance(msg.get("text"), str) and msg["text"].strip() != ""
            and not msg.get("deleted") and msg.get("review_result", True) is not False)


def _best_reply(msg: dict) -> dict | None:
    """The reply ranked best; unranked replies come after ranked ones, in file order."""
    replies = [r for r in msg.get("replies") or [] if _usable(r)]
    if not replies:
        return None
    ranked = sorted(range(len(replies)),
                    key=lambda i: (replies[i].get("rank") is None, replies[i].get("rank") or 0, i))
    return replies[ranked[0]]


def oasst(trees: Iterable[dict]) -> Iterator[dict]:
    """One dialogue per message tree: the best-ranked path from its prompt."""
    for tree in trees:
        node = tree.get("prompt")
        if not _usable(node):
            continue
        messages = []
        while node is not None:
            role = "user" if node.get("role") == "prompter" else "assistant"
            messages.append({"role": role, "content": node["text"]})
            node = _best_reply(node)
        if messages[-1]["role"] == "user":  # a prompter turn nobody answered teaches nothing
            messages.pop()
        if len(messages) < 2:
            continue
        yield {"messages": check(messages), "source": "oasst", "id": str(tree.get("message_tree_id", "")),
               "lang": tree["prompt"].get("lang")}


# ---------------------------------------------------------------- FastChat identity


def renamer(name: str = NAME, org: str = ORG):
    """A function that gives FastChat's identity answers this model's name and maker."""
    subs = [(re.compile(r"Large Model Systems Organization \(LMSYS\)"), org),
            (re.compile(r"\bLMSYS\b"), org), (re.compile(r"\bVicuna\b"), name)]

    def rename(text: str) -> str:
        for pattern, new in subs:
            text = pattern.sub(new, text)
        return text
    return rename


def identity(items: Iterable[dict], name: str = NAME, org: str = ORG) -> Iterator[dict]:
    from llmtool.data.conversations import conversation

    rename = renamer(name, org)
    for item in items:
        msgs = conversation(item)
        yield {"messages": [{"role": m["role"], "content": rename(m["content"]) if m["role"] == "assistant"
                             else m["content"]} for m in msgs],
               "source": "identity", "id": str(item.get("id", ""))}


# ---------------------------------------------------------------- self-instruct


def self_instruct(tasks: Iterable[dict]) -> Iterator[dict]:
    for task in tasks:
        instruction = _field(task, "instruction", str(task.get("id", "task")))
        for k, inst in enumerate(task.get("instances") or []):
            inp, out = (inst.get("input") or "").strip(), inst.get("output")
            if not isinstance(out, str) or not out.strip():
                continue
            user = instruction.strip() + (f"\n\n{inp}" if inp else "")
            yield {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": out.strip()}],
                   "source": "self-instruct", "id": f"{task.get('id', '')}/{k}"}


# ---------------------------------------------------------------- GSM8K

FINAL = re.compile(r"####\s*(-?[\d,]*\.?\d+)\s*$")


def final_answer(solution: str) -> str | None:
    """The number after a solution's closing `####` (commas removed), or None."""
    m = FINAL.search(solution.strip())
    return m.group(1).replace(",", "") if m else None


def gsm8k(problems: Iterable[dict]) -> Iterator[dict]:
    for k, p in enumerate(problems):
        question = _field(p, "question", f"problem {k}")
        solution = p.get("answer") if isinstance(p.get("answer"), str) else p.get("ground_truth")
        if not isinstance(solution, str) or final_answer(solution) is None:
            raise BadConversation(f"problem {k}: no solution ending in '#### N' (in 'answer' or 'ground_truth')")
        yield {"messages": [{"role": "user", "content": question.strip()},
                            {"role": "assistant", "content": solution.strip()}],
               "prompt": question.strip(), "answer": final_answer(solution), "source": "gsm8k", "id": str(k)}


CONVERTERS = {"oasst": oasst, "identity": identity, "self-instruct": self_instruct, "gsm8k": gsm8k}
