"""The one matching normalisation, checked on words as the seed articles print them."""

import sys
import unicodedata

import pytest
from conftest import SEEDS

from rag.text.normalize import _PLAIN, fold, terms

SEED_TEXT = "\n".join(path.read_text(encoding="utf-8") for path in sorted(SEEDS.glob("*.txt")))


@pytest.mark.parametrize(
    ("as_printed", "as_typed"),
    [
        ("defence", "defense"),
        ("Defence", "DEFENSE"),
        ("modernisation", "modernization"),
        ("modernising", "modernizing"),
        ("prioritising", "prioritizing"),
        ("recognised", "recognized"),
        ("emphasised", "emphasized"),
        ("industrialisation", "industrialization"),
        ("specialised", "specialized"),
        ("programmes", "programs"),
        ("mobilisation", "mobilization"),
        ("weapons", "weapon"),
        ("Phạm Minh Chính", "Pham Minh Chinh"),
        ("HÀ NỘI", "Ha Noi"),
        ("Politburo’s", "Politburo's"),
        ("2021–2025", "2021-2025"),
    ],
)
def test_spellings_accents_and_punctuation_meet(as_printed, as_typed):
    assert as_printed in SEED_TEXT  # the words are the articles' own
    assert terms(as_printed) == terms(as_typed)


def test_d_with_stroke_folds_to_d():
    assert fold("Đà Nẵng đã") == "da nang da"


@pytest.mark.parametrize("code", ["57-NQ/TW", "08-NQ/TW", "2021–2025", "140", "7.09"])
def test_numbers_and_codes_are_kept_whole(code):
    assert fold(code).replace("–", "-") in terms(code)


def test_code_parts_let_a_short_mention_match():
    assert "57" in terms("Resolution 57-NQ/TW") and "57" in terms("Resolution 57")
    assert "08-nq/tw" in terms("No. 08-NQ/TW") and "08-nq/tw" not in terms("Resolution 08")


def test_stopwords_are_dropped():
    assert terms("the army of the people") == ["armi", "peopl"]


def test_folding_never_changes_the_text_it_is_given():
    text = "Phạm Minh Chính’s “defence” — 2021–2025"
    copy = str(text)
    fold(text)
    terms(text)
    assert text == copy


def test_folding_by_runs_equals_folding_every_character():
    """fold() decomposes only runs of non-ASCII characters, each once; the result must be that
    of the plain definition over the whole text, for every character there is."""
    def reference(text: str) -> str:
        decomposed = unicodedata.normalize("NFKD", text.casefold()).casefold().translate(_PLAIN)
        return "".join(char for char in decomposed if not unicodedata.combining(char))

    every = "".join(chr(code) for code in range(0x20, sys.maxunicode) if not 0xD800 <= code < 0xE000)
    texts = [every[start : start + 4000] for start in range(0, len(every), 4000)]
    texts += ["Thủ tướng PHẠM MINH CHÍNH, Đà Nẵng: “e\u0301” ΣΑΣ ℌ ﬁ ① İ", "A\u030a ß Ø"]
    assert [fold(text) for text in texts] == [reference(text) for text in texts]
