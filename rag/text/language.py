"""Which language a question is in, when it is confidently not English.

The embedding model and the matching rules read English: a question in another language
finds little and used to get a bare "not in the articles". Telling the reader why, and what
to do, is better. py3langid (langid.py's maintained fork: a naive Bayes model over byte
n-grams, bundled, about 0.1 ms a question) names the language.
"""

from __future__ import annotations

from functools import lru_cache

# A question is called non-English when langid gives another language at least this
# probability. Set by judgement, not fitted (tune holds one non-English question): telling an
# English reader to ask in English costs more than missing a notice, so it is high; on tune,
# no English question, typos included, reaches 0.5.
NON_ENGLISH_PROBABILITY = 0.8
_NAMES = {"vi": "Vietnamese", "fr": "French", "de": "German", "es": "Spanish", "zh": "Chinese", "ja": "Japanese",
          "ko": "Korean", "ru": "Russian", "pt": "Portuguese", "it": "Italian", "nl": "Dutch", "th": "Thai",
          "id": "Indonesian", "ar": "Arabic", "pl": "Polish"}


@lru_cache(maxsize=1)
def _identifier():  # noqa: ANN202 - py3langid is imported lazily (its model loads in about 0.3 s)
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def foreign_language(question: str) -> str | None:
    """The name of the question's language if it is confidently not English, else None."""
    code, probability = _identifier().classify(question)
    if code == "en" or probability < NON_ENGLISH_PROBABILITY:
        return None
    return _NAMES.get(code, f"language '{code}'")


def language_notice(language: str) -> str:
    return (f"This question looks like {language}. The model reads English, so the search and the answer may "
            "miss what the articles say: ask in English for a reliable answer.")
