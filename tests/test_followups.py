"""Follow-up questions are searched with the topic they continue, and say so."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from rag import Index, QueryError, Turn
from rag.search.followups import standalone_question
from ui.workspace import parse_date

FIRST = Turn("Who chaired the meeting at Hoa Lac?",
             "Prime Minister Pham Minh Chinh chaired a meeting with the Ministry of National Defense. [1]")


@pytest.mark.parametrize(("question", "carried"), [
    ("Who else attended it?", "(chaired meeting Hoa Lac)"),
    ("And when?", "(chaired meeting Hoa Lac)"),
    ("When?", "(chaired meeting Hoa Lac)"),
    ("And Viettel?", "(chaired meeting Hoa Lac)"),  # names something, but "And" continues the thread
    ("What did he ask for?", "Pham Minh Chinh"),  # "he": whom the answer named
])
def test_a_question_that_leans_on_the_last_one_carries_its_topic(question: str, carried: str) -> None:
    searched = standalone_question(question, [FIRST])

    assert searched is not None and searched.startswith(question) and carried in searched


@pytest.mark.parametrize("question", ["How many ships has the defence industry built?",
                                      "Which resolution is about the defence industry until 2030?",
                                      "Who is To Lam?", "What is Viettel?"])  # short, but naming a new topic
def test_a_question_that_stands_on_its_own_is_searched_as_asked(question: str) -> None:
    assert standalone_question(question, [FIRST]) is None
    assert standalone_question("Who else attended it?", []) is None  # nothing to lean on


def test_a_chain_of_follow_ups_passed_as_answers_keeps_its_topic(fake_index: Path, embedder) -> None:
    """An earlier answer stands for the question as it was searched: the third question of a
    chain still carries the first one's topic, from Answer objects or from their JSON records."""
    index = Index.open(fake_index, embedder=embedder)
    first = index.ask(FIRST.question)
    second = index.ask("Who else attended it?", history=[first])
    third = index.ask("When was it?", history=[first, second])
    assert second.searched_for and "Hoa Lac" in second.searched_for
    assert third.searched_for and "Hoa Lac" in third.searched_for
    as_records = index.ask("When was it?", history=[first.to_json(), second.to_json()])
    assert as_records.searched_for == third.searched_for
    long_chain = [first, second, third]
    for question in ("What did he ask for?", "Who else was there?", "And when?", "Where was it?"):
        long_chain.append(index.ask(question, history=long_chain))
    searched = long_chain[-1].searched_for
    assert searched and len(searched.split("(", 1)[1].split()) <= 12 + 3 * 4  # bounded, whatever the chain's length
    assert " else " not in f" {searched.split('(', 1)[1]} "  # words that only refer back are not topic
    odd = index.ask("When was it?", history=[{**first.to_json(), "searched_for": 7}])  # read as the question
    assert odd.searched_for == index.ask("When was it?", history=[first]).searched_for


def test_history_is_checked(fake_index: Path, embedder) -> None:
    index = Index.open(fake_index, embedder=embedder)
    with pytest.raises(QueryError, match="history must list earlier turns"):
        index.ask("Who else attended it?", history=["Who chaired it?"])
    answer = index.ask("Who else attended it?", history=[{"question": FIRST.question, "answer": FIRST.answer}])
    assert answer.question == "Who else attended it?" and answer.searched_for.endswith("(chaired meeting Hoa Lac)")
    assert answer.to_json()["searched_for"] == answer.searched_for


@pytest.mark.model
def test_a_follow_up_is_answered_from_the_article_of_the_thread(real_index: Path, real_embedder) -> None:
    index = Index.open(real_index, embedder=real_embedder)
    first = index.ask(FIRST.question)
    history = [(first.question, first.answer)]

    follow_up = index.ask("And when was it?", history=history)
    alone = index.ask("And when was it?")

    assert {c.article_id for c in follow_up.citations} == {"003_62729c1e8f798b4f"}
    assert "March 15" in follow_up.answer
    assert alone.abstained or "003_62729c1e8f798b4f" not in {c.article_id for c in alone.citations}


# --- honest filters: what a date range leaves out is said, in the answer and its JSON ---------


def test_a_date_range_names_the_undated_articles_it_leaves_out(fake_index: Path, embedder) -> None:
    index = Index.open(fake_index, embedder=embedder)
    undated = tuple(index.undated_articles())
    answer = index.ask("Who chaired the meeting at Hoa Lac?", date_from=dt.date(2025, 1, 1))

    assert undated and answer.excluded_undated == undated
    assert f"{len(undated)} article(s) of unknown date ({', '.join(undated)}) were not searched" in answer.notice
    assert answer.to_json()["excluded_undated"] == list(undated)
    included = index.ask("Who chaired the meeting at Hoa Lac?", date_from=dt.date(2025, 1, 1), include_undated=True)
    assert included.excluded_undated == () and "unknown date" not in (included.notice or "")


def test_a_range_without_articles_says_so_rather_than_not_answered(fake_index: Path, embedder) -> None:
    answer = Index.open(fake_index, embedder=embedder).ask("How many ships?", date_from=dt.date(1990, 1, 1),
                                                           date_to=dt.date(1990, 12, 31))

    assert answer.abstained
    assert answer.notice.startswith("No article is dated in this range (from 1990-01-01 to 1990-12-31): widen")
    with_undated = Index.open(fake_index, embedder=embedder).ask(
        "Who chaired the meeting at Hoa Lac?", date_from=dt.date(2030, 1, 1), include_undated=True)
    assert with_undated.citations and {c.article_id for c in with_undated.citations} == {"003_62729c1e8f798b4f"}
    assert "No article is dated" not in (with_undated.notice or "")  # the undated articles were searched


@pytest.mark.parametrize(("typed", "end", "expected"), [
    ("March 2025", False, (2025, 3, 1)), ("March 2025", True, (2025, 3, 31)), ("2025", True, (2025, 12, 31)),
    ("2024-02", True, (2024, 2, 29)), ("Sep. 2025", False, (2025, 9, 1)), (" 2025-03-15 ", True, (2025, 3, 15)),
    ("Sept 2025", False, (2025, 9, 1)), ("December 9999", True, (9999, 12, 31)),
])
def test_the_page_reads_a_month_or_a_year_as_a_range_bound(typed: str, end: bool, expected: tuple[int, int, int]) -> None:
    assert parse_date(typed, "the start date", end=end) == dt.date(*expected)


@pytest.mark.parametrize("typed", ["Marchh 2025", "2025-13", "next week", "15/03/2025", "0000", "March 0000"])
def test_a_date_the_page_cannot_read_is_refused_with_the_forms_it_takes(typed: str) -> None:
    with pytest.raises(QueryError, match=r"must be a date \(YYYY-MM-DD\), a month \(March 2025\) or a year \(2025\)"):
        parse_date(typed, "the start date")
