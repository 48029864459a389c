"""The shapes a sample may come in, mapped to {instruction, input, output}: the instruction shape in
any letter case, prompt/completion, question/answer, chat `messages` and ShareGPT `conversations`.
What does not map is a reason with the fields it had, never an exception."""

from __future__ import annotations

from typing import Any

INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e"
_VANISH = str.maketrans("", "", INVISIBLE)


def shown(text: Any, width: int = 80) -> str:
    """A user's text as it may appear in a report: escaped (no line breaks or control characters from
    their data in our log) and cut to `width`, so a 10 MB key costs a report 80 characters."""
    text = repr(str(text))[1:-1]
    return text if len(text) <= width else text[: width - 1] + "…"


def is_empty(text: str) -> bool:
    """Only whitespace and invisible characters (zero-width space, BOM, soft hyphen): empty."""
    return not text.translate(_VANISH).strip()


def _turns(items: Any, role_key: str, text_key: str, roles: dict[str, str]) -> list[tuple[str, str]] | None:
    if not isinstance(items, list) or not items:
        return None
    turns = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get(text_key), str):
            return None
        role = item.get(role_key, "")
        if not isinstance(role, str):  # a role that is a list or a number is no role this shape knows
            return None
        role = role.lower()
        turns.append((roles.get(role, role), item[text_key]))
    return turns


SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system",
                  "chatgpt": "assistant", "bing": "assistant", "bard": "assistant"}


def _from_chat(turns: list[tuple[str, str]]) -> tuple[str, str, str] | None:
    """One sample per conversation: the last assistant turn is the output, the user turn before it the
    instruction; the system prompt and any earlier turns become the input, one 'role: text' per line."""
    last = max((i for i, (role, _) in enumerate(turns) if role == "assistant"), default=-1)
    user = max((i for i, (role, _) in enumerate(turns[:last]) if role == "user"), default=-1)
    if last < 0 or user < 0:
        return None
    context = "\n".join(f"{role}: {text}" for role, text in turns[:user])
    return turns[user][1], context, turns[last][1]


def map_shape(obj: dict[str, Any]) -> tuple[tuple[Any, Any, Any] | None, str]:
    """(instruction, input, output) from a well-known shape, and the shape's name; (None, reason)."""
    lower = {k.lower(): v for k, v in obj.items() if isinstance(k, str)}
    if "instruction" in lower or "output" in lower:
        exact = "instruction" in obj or "output" in obj
        return (lower.get("instruction"), lower.get("input"), lower.get("output")), \
            "instruction" if exact else "instruction_other_case"
    if "prompt" in lower and "completion" in lower:
        return (lower["prompt"], "", lower["completion"]), "prompt_completion"
    if "question" in lower and "answer" in lower:
        return (lower["question"], lower.get("context", ""), lower["answer"]), "question_answer"
    if "messages" in lower:
        turns = _turns(lower["messages"], "role", "content", {})
        chat = _from_chat(turns) if turns else None
        return (chat, "messages") if chat else (None, "unknown_shape")
    if "conversations" in lower:
        turns = _turns(lower["conversations"], "from", "value", SHAREGPT_ROLES)
        chat = _from_chat(turns) if turns else None
        return (chat, "sharegpt") if chat else (None, "unknown_shape")
    return None, "unknown_shape"


def clean_record(obj: object) -> tuple[dict[str, str] | None, str, str]:
    """Return (record, shape, "") for a usable parsed line, else (None, reason, detail)."""
    if not isinstance(obj, dict):
        return None, "not_an_object", ""
    fields, shape = map_shape(obj)
    if fields is None:
        keys = ", ".join(shown(k, 40) for k in sorted(obj)[:6]) or "no fields"
        return None, shape, f"fields: {keys}"
    instruction, inp, output = ("" if v is None else v for v in fields)
    if type(instruction) is not str or type(inp) is not str or type(output) is not str:
        return None, "non_string_field", ""
    if is_empty(instruction):
        return None, "missing_instruction", ""
    if is_empty(output):
        return None, "missing_output", ""
    return {"instruction": instruction, "input": inp, "output": output}, shape, ""


def cut(record: dict[str, str], limit: int) -> dict[str, str] | None:
    """Shorten the output so the sample fits `limit` bytes; None when the prompt alone does not.
    Sizes are taken with surrogates passed through: a lone one is named later, not a crash here."""
    room = (limit - len(record["instruction"].encode("utf-8", "surrogatepass"))
            - len(record["input"].encode("utf-8", "surrogatepass")))
    if room <= 0:
        return None
    output = record["output"].encode("utf-8", "surrogatepass")[:room].decode("utf-8", "ignore")
    return None if is_empty(output) else {**record, "output": output}
