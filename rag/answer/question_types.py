"""What kind of answer a question asks for, and whether a sentence holds one of that kind.

"How many ships..." wants a number, "When..." a date, "Who..." a person, "Where..." a place.
Among candidate sentences close in score, one holding an answer of the asked type is the
better answer (rag.answer.extractive adds `answer_type_weight` to its score). Patterns, not a
tagger: news sentences mark these types plainly (digits, month names, capitalised names,
"in <Place>"), and a wrong guess only costs a small bonus.
"""

from __future__ import annotations

import re
from typing import Literal

AnswerType = Literal["number", "date", "person", "place"]

_ASKS = [
    ("date", re.compile(r"^\W*(when\b|(since|until|by) when\b)|\b(what|which) (was |is )?(the )?"
                        r"(date|day|year|month|period)\b", re.IGNORECASE)),
    ("number", re.compile(r"\b(how (many|much|long|big|large|fast|far|heavy|old|tall)|"
                          r"(what|which) (number|percentage|share|proportion|amount|size|figure|total|value)|"
                          r"what per ?cent)\b", re.IGNORECASE)),
    ("person", re.compile(r"^\W*(who|whom|whose)\b|\b(what|which) (person|official|leader|minister|director|"
                          r"general|officer|chairman|head)\b", re.IGNORECASE)),
    ("place", re.compile(r"^\W*(where\b|(in |at )?(what|which) (city|country|province|place|location|venue|town|"
                         r"site|region|port|park|campus)\b)", re.IGNORECASE)),
]
_HOLDS: dict[str, re.Pattern[str]] = {
    "number": re.compile(r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|"
                         r"forty|fifty|hundred|hundreds|thousand|thousands|million|billion|dozen|dozens)\b",
                         re.IGNORECASE),
    "date": re.compile(r"\b(january|february|march|april|june|july|august|september|october|november|"
                       r"december|monday|tuesday|wednesday|thursday|friday|saturday|sunday|(19|20)\d\d|"
                       r"(?-i:May))\b", re.IGNORECASE),  # "may" the verb is no date
    "person": re.compile(r"(?<!^)\b[A-Z][\w’'-]+(?: [A-Z][\w’'-]+){1,3}\b|\b(Mr|Ms|Mrs|Dr|General|Colonel|Minister|"
                         r"Director|President|Chairman|Secretary)\b"),
    "place": re.compile(r"\b(in|at|near|from|to) (the )?[A-Z][\w’'-]+"),
}


def asked_type(question: str) -> AnswerType | None:
    """The type of answer the question asks for, if it says."""
    for answer_type, pattern in _ASKS:
        if pattern.search(question):
            return answer_type  # type: ignore[return-value]
    return None


def holds_type(sentence: str, answer_type: AnswerType | None) -> bool:
    """Whether the sentence holds something of the type (always False for no type)."""
    return answer_type is not None and bool(_HOLDS[answer_type].search(sentence))
