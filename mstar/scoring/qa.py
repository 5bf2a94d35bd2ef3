"""LLM-mode scoring (docs/ARCHITECTURE.md#scoring): the answer step, token F1, and an LLM judge.

The answer step is what an agent using the harness would do: the harness's ``INSTRUCTIONS`` as the
system message, then the recalled context and the question. Its answer is scored two ways:

- ``qa_f1`` — token F1 against the gold answer after LoCoMo/SQuAD-style normalisation (lower case,
  punctuation and the articles a/an/the dropped). Needs no judge, so it is cheap and repeatable;
- ``qa_judge`` — 1 or 0 from a yes/no LLM judge whose prompt depends on the probe's category in the
  way LongMemEval's judges do: temporal answers may be off by one day, knowledge-update answers must
  give the latest value, abstention probes are correct only when the answer declines.

Both calls go through the host toolkit (the broker: cache, cost ledger, hard budget), so a repeated
evaluation is served from the cache and costs nothing. Abstention and adversarial probes have no gold
answer to overlap with: they get a judge score only.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable
from typing import Any

from mstar.episodes import Probe

ANSWER_MAX_TOKENS = 64
JUDGE_MAX_TOKENS = 8  # "yes" / "no", with room for "Yes." from models that ignore "exactly one word"
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)

LLMFn = Callable[..., str]


def normalise(text: str) -> list[str]:
    return _ARTICLES.sub(" ", str(text).lower().translate(_PUNCT)).split()


def token_f1(prediction: str, gold: str) -> float:
    pred, ref = normalise(prediction), normalise(gold)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    p, r = common / len(pred), common / len(ref)
    return 2 * p * r / (p + r)


def answer_messages(instructions: str, context: str, probe: Probe) -> list[dict[str, str]]:
    when = f" (asked on {probe.time})" if probe.time else ""
    user = (f"Memory:\n{context or '(empty)'}\n\nQuestion{when}: {probe.question}\n"
            "Answer in a short phrase, using only the memory above.")
    return [{"role": "system", "content": instructions}, {"role": "user", "content": user}]


_JUDGE_RULES = {
    "temporal": "Dates or durations that differ from the gold answer by at most one day still count as correct.",
    "knowledge-update": "The response must give the latest value in the gold answer; an outdated value is wrong, "
                        "mentioning the old value as well as the new one is fine.",
    "abstention": "The gold answer is that the information is not available: the response is correct only if it "
                  "says it does not know or that the information is not in memory.",
}


def judge_messages(probe: Probe, response: str) -> list[dict[str, str]]:
    gold = "(not answerable from the conversation)" if probe.abstention else str(probe.answer)
    rule = _JUDGE_RULES["abstention" if probe.abstention else probe.category] if (
        probe.abstention or probe.category in _JUDGE_RULES) else \
        "A response that contains the gold answer or an equivalent of it is correct, even if it says more."
    user = (f"Question: {probe.question}\nGold answer: {gold}\nResponse: {response}\n\n{rule}\n"
            "Is the response correct? Reply with exactly one word: yes or no.")
    return [{"role": "system", "content": "You grade answers to questions about a conversation."},
            {"role": "user", "content": user}]


def parse_verdict(reply: str) -> float | None:
    """'yes' -> 1, 'no' -> 0, anything else -> None (unusable: the caller scores it 0 and counts it)."""
    m = re.search(r"\b(yes|no)\b", reply.strip().lower())
    return None if m is None else float(m.group(1) == "yes")


def answer_and_judge(llm: LLMFn, instructions: str, context: str, probe: Probe,
                     judge: bool = True, judge_llm: LLMFn | None = None) -> dict[str, Any]:
    """One probe through the answer step (and the judge): {"answer", "qa_f1", "qa_judge", "judge_unusable"}.

    A verdict that is neither yes nor no scores 0 and sets ``judge_unusable`` (counted in the tables):
    dropping it would let an answer crafted to confuse the judge (the harness writes the instructions
    the answer follows) take its probe out of the mean."""
    answer = llm(answer_messages(instructions, context, probe), max_tokens=ANSWER_MAX_TOKENS, temperature=0)
    out: dict[str, Any] = {"answer": answer.strip(), "qa_f1": None, "qa_judge": None, "judge_unusable": False}
    gold = None if probe.answer is None else str(probe.answer).strip()
    if gold and not probe.abstention:
        out["qa_f1"] = token_f1(answer, gold)
    if judge and (gold or probe.abstention):
        verdict = parse_verdict((judge_llm or llm)(judge_messages(probe, answer), max_tokens=JUDGE_MAX_TOKENS,
                                                   temperature=0))
        out["judge_unusable"] = verdict is None
        out["qa_judge"] = 0.0 if verdict is None else verdict
    return out
