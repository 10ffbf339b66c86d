"""Question types and answer types; the language notice."""

import pytest

from rag.answer.question_types import asked_type, holds_type
from rag.text.language import foreign_language


@pytest.mark.parametrize(("question", "expected"), [
    ("How many ships has the defence industry built?", "number"),
    ("What share of the parts are made at home?", "number"),
    ("When did the ceremony take place?", "date"),
    ("On what date did the Prime Minister visit?", "date"),
    ("What was the date of the ceremony?", "date"),
    ("Who chaired the meeting at Hoa Lac?", "person"),
    ("Which official received the vessels?", "person"),
    ("Where was the expo held?", "place"),
    ("In which city did To Lam honour the department?", "place"),
    ("What title was presented?", None),
])
def test_the_type_a_question_asks_for(question, expected):
    assert asked_type(question) == expected


def test_a_sentence_holds_a_type_by_its_plain_marks():
    assert holds_type("It has built nearly 140 ships.", "number")
    assert holds_type("It has built dozens of ships.", "number")
    assert not holds_type("It has built many ships.", "number")
    assert holds_type("The session was held on Wednesday.", "date")
    assert holds_type("The expo opened on 18 May.", "date")
    assert not holds_type("The ministry may expand the programme.", "date")
    assert holds_type("The meeting was chaired by Pham Minh Chinh.", "person")
    assert not holds_type("the meeting was chaired by the premier.", "person")
    assert holds_type("The expo opened in Hanoi.", "place")
    assert not holds_type("It has built nearly 140 ships.", None)


@pytest.mark.parametrize(("question", "language"), [
    ("Ai đã chủ trì cuộc họp tại Khu Công nghệ cao Hòa Lạc?", "Vietnamese"),
    ("Combien de navires l'industrie de défense a-t-elle construits ?", "French"),
    ("Wie viele Schiffe hat die Verteidigungsindustrie gebaut?", "German"),
])
def test_a_question_not_in_english_is_named(question, language):
    assert foreign_language(question) == language


@pytest.mark.parametrize("question", ["Who chaird the meting at Hoa Lack?", "How many ships has the defense industry built",
                                      "Pham Minh Chinh Hoa Lac", "to lam hero title"])
def test_english_with_typos_and_names_is_english(question):
    assert foreign_language(question) is None
