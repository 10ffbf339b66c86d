"""Follow-up questions: a question that leans on the one before is searched with what it leans on.

"Who chaired the meeting at Hoa Lac?" then "Who else attended it?" or "What did he ask for?":
the second names neither the meeting nor the man, so on its own it retrieves anything. A
question is a follow-up when it refers back (a pronoun such as "it", "he", "they", "there";
"else"; an opening "And" or "What about") or holds at most one content word and names
nothing ("When?", "How many?"; but "Who is To Lam?" and "What is Viettel?" start a topic
of their own). It is then
searched as itself plus the topic it continues: the content words of the previous (itself
rewritten) question, and for "he", "she" or "they" the names the previous answer gave, which
is whom such a pronoun most often stands for. Matching is by words and vectors, so appended context finds the passage
without a grammatical rewrite; the reader is shown exactly what was searched.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rag.text.normalize import STOPWORDS, fold

_PEOPLE = frozenset("he him his she her hers they them their theirs".split())
_REFERS_BACK = _PEOPLE | frozenset("it its it's this that these those there then else former latter one ones".split())
_OPENINGS = re.compile(r"^\s*(?:and|but|also|so|what about|how about|and what about)\b", re.IGNORECASE)
_QUESTION_WORDS = frozenset("who whom whose what which when where why how many much did do does is are was were "
                            "can could would should will please tell me about".split())
_NOT_TOPIC = STOPWORDS | _QUESTION_WORDS | _REFERS_BACK  # words that carry no topic to a follow-up
_WORD = re.compile(r"[\w'’.-]+")
_NAME = re.compile(r"\b[A-Z][\w'’.-]*(?:\s+(?:of\s+|the\s+)?[A-Z][\w'’.-]*)+")
_MAX_NAMES = 3
_MAX_TOPIC_WORDS = 12  # of the previous question as searched: a long chain's earliest words give way


@dataclass(frozen=True)
class Turn:
    """An earlier question of the conversation, as it was searched, and the answer's text."""

    question: str
    answer: str


def standalone_question(question: str, history: Sequence[Turn]) -> str | None:
    """The question with the context it leans on appended, or None if it stands on its own
    (or there is nothing before it)."""
    if not history or not _is_follow_up(question):
        return None
    previous = history[-1]
    topic = [word for word in _WORD.findall(previous.question) if fold(word) not in _NOT_TOPIC]
    asked = [fold(word) for word in _WORD.findall(question)]
    names = [name for name in dict.fromkeys(_NAME.findall(previous.answer)) if name not in previous.question] \
        if any(word in _PEOPLE for word in asked) else []  # "he", "they": most often who the answer named
    seen = set(asked)
    context = []
    for word in topic[:_MAX_TOPIC_WORDS] + [word for name in names[:_MAX_NAMES] for word in _WORD.findall(name)]:
        if fold(word) not in seen and fold(word) not in STOPWORDS:
            seen.add(fold(word))
            context.append(word)
    if not context:
        return None
    return f"{question.rstrip()} ({' '.join(context)})"


def _is_follow_up(question: str) -> bool:
    typed = _WORD.findall(question)
    words = [fold(word) for word in typed]
    content = [word for word in words if word not in STOPWORDS and word not in _QUESTION_WORDS
               and word not in _REFERS_BACK]
    names_something = any(word[0].isupper() for word in typed[1:])  # a capital past the first word: a name
    return (bool(_OPENINGS.match(question)) or any(word in _REFERS_BACK for word in words)
            or (len(content) <= 1 and not names_something))
