"""How a gen: task reads the answer out of generated text, and when it counts as right.

    extract("last_number", "7 + 5 = 12.")                      # "12"
    is_correct("last_number", "12", "12.0")                    # True
    extract("option_letter", "The answer is B.", letters="ABCD") # "B"

Each rule is stated in RULES (the row's answer_rule column holds the statement), so a result says how it was scored.
The generated text is first cut at the first stop string (gen.py) and at the end-of-sequence token.
"""

from __future__ import annotations

import re
import string

RULES = {
    "last_number": "last_number: the last number in the generated text (thousands commas dropped), right when it "
                   "equals the gold number within 1e-6",
    "option_letter": "option_letter: the first option letter standing alone (A, B, ... as the prompt lists them) in "
                     "the generated text, right when it is the gold option's",
    "exact_match": "exact_match: the generated text and the gold answer equal after normalisation (lower case, "
                   "punctuation and the articles a/an/the dropped, whitespace collapsed)",
}
ANSWER_RULES = tuple(RULES)

NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
ARTICLES = re.compile(r"\b(a|an|the)\b")
PUNCTUATION = str.maketrans("", "", string.punctuation)


def parse_number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def normalise(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    return " ".join(ARTICLES.sub(" ", text.lower().translate(PUNCTUATION)).split())


def extract(rule: str, text: str, letters: str = "") -> str | None:
    """The answer `rule` reads out of `text`; None where there is none (no number, no option letter)."""
    if rule == "last_number":
        numbers = [n for n in NUMBER.findall(text) if parse_number(n) is not None]
        return numbers[-1].replace(",", "") if numbers else None
    if rule == "option_letter":
        if not letters:
            raise ValueError("option_letter needs the options' letters; the example has no options")
        found = re.search(rf"(?<![A-Za-z])([{letters}])(?![A-Za-z])", text)
        return found.group(1) if found else None
    if rule == "exact_match":
        return normalise(text) or None
    raise ValueError(f"unknown answer_rule {rule!r}; choose one of {', '.join(ANSWER_RULES)}")


def is_correct(rule: str, extracted: str | None, gold: str) -> bool:
    if extracted is None:
        return False
    if rule == "last_number":
        value, expected = parse_number(extracted), parse_number(gold)
        return value is not None and expected is not None and abs(value - expected) <= 1e-6 * max(1.0, abs(expected))
    if rule == "exact_match":
        return extracted == normalise(gold)
    return extracted == gold
