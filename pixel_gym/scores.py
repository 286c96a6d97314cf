"""`pixel_reasoner`: the correctness rule of the paper's released code, as a score of one answer.

The released RL reward and the released evaluation (TIGER-AI-Lab/Pixel-Reasoner, experience_maker.py,
`rule_reward`) score every question the same way, and so does `pixel_reasoner_score`:
- the response and the golds are lower-cased; the answer is the response's last `\\boxed{}` (a text without one,
  such as the env's already extracted answer, is the answer itself);
- a gold with "%" also accepts itself without the "%" (tried first, as the released code inserts it first);
- both sides get the released normalization (dfrac -> frac, no `\\text`, varnothing -> emptyset, no "minutes",
  no "cm"); equal stripped strings match, and otherwise `math_verify.verify(parse(answer), parse(gold))` decides,
  each wrapped in `\\boxed{}` (so "1/2" matches "0.5", "1,000" matches "1000");
- a gold with commas ("troubles, the siege of krishnapur") also accepts an answer that contains every one of its
  comma-separated parts (the released code slices the gold as if it were wrapped in `\\boxed{}`, dropping its first
  seven and last characters; here the parts are the gold's own);
- binary: 1.0 as soon as one gold scores above 0.5, else 0.0.
math_verify's timeouts use SIGALRM, which only works in the main thread; elsewhere it runs without a timeout, and
answers longer than `MAX_VERIFY_CHARS` are compared as strings only.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from math_verify import parse, verify

from pixel_gym.actions import last_boxed

MAX_VERIFY_CHARS = 1000
VERIFY_TIMEOUT_S = 5
_RELEASED_REPLACEMENTS = (("dfrac", "frac"), ("\\text", ""), ("\\varnothing", "\\emptyset"), ("minutes", ""),
                          ("cm", ""))

for _name in ("math_verify.parser", "math_verify.grader"):  # they log every unparsable answer
    logging.getLogger(_name).setLevel(logging.CRITICAL)


def pixel_reasoner_score(response: str, golds: Sequence[str]) -> float:
    """1.0 if the response's answer matches one of the golds under the released rule, else 0.0."""
    text = response.lower()
    boxed = last_boxed(text)
    answer = (text if boxed is None else boxed).strip()
    if not answer:
        return 0.0
    return float(any(_matches(answer, gold) for gold in released_golds(golds)))


def released_golds(golds: Sequence[str]) -> list[str]:
    """The golds lower-cased, with the first gold holding "%" also given without it, in front."""
    lowered = [str(gold).lower() for gold in golds]
    percent = next((gold.replace("%", "") for gold in lowered if "%" in gold), None)
    return [percent, *lowered] if percent is not None and percent not in lowered else lowered


def _matches(answer: str, gold: str) -> bool:
    if _equivalent(_normalize(answer), _normalize(gold)):
        return True
    parts = [part.strip() for part in gold.split(",") if part.strip()]
    return len(parts) > 1 and all(part in answer for part in parts)


def _equivalent(answer: str, gold: str) -> bool:
    """Equal stripped strings, or else math_verify's verdict on the two boxed strings."""
    if answer.strip() == gold.strip():
        return True
    if len(answer) > MAX_VERIFY_CHARS:
        return False
    timeout = VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None
    try:
        parsed_answer = parse(f"\\boxed{{{answer}}}", parsing_timeout=timeout)
        parsed_gold = parse(f"\\boxed{{{gold}}}", parsing_timeout=timeout)
        return bool(parsed_answer and parsed_gold and verify(parsed_answer, parsed_gold, timeout_seconds=timeout))
    except Exception:  # noqa: BLE001  (sympy and math_verify raise many kinds on odd input)
        return False


def _normalize(text: str) -> str:
    for old, new in _RELEASED_REPLACEMENTS:
        text = text.replace(old, new)
    return text
