"""The evaluation question set and its split: what the tune/held-out figures rest on."""

import json
from collections import Counter

import pytest
from conftest import DATA, SEEDS

from rag.eval.questions import load_questions, split_of
from rag.text.normalize import fold

ARTICLES = {path.stem: path.read_text(encoding="utf-8")
            for folder in (SEEDS, DATA / "eval_articles") for path in folder.glob("*.txt")}
QUESTIONS = load_questions(DATA / "qa_set.jsonl")


def test_the_set_is_large_varied_and_mostly_paraphrased():
    kinds = Counter(q.kind for q in QUESTIONS)
    assert len(QUESTIONS) >= 200 and kinds["non-english"] >= 3 and kinds["typo"] >= 20
    assert sum(not q.answerable for q in QUESTIONS) >= 0.2 * len(QUESTIONS)
    assert {q.unanswerable_kind for q in QUESTIONS if not q.answerable} == {"off-topic", "absent", "false-premise"}
    clean = [q for q in QUESTIONS if not q.variant_of]
    paraphrases = [q for q in clean if q.kind == "paraphrase"]
    assert len(paraphrases) >= 0.5 * sum(q.answerable for q in clean)
    assert sum(q.overlap < 0.5 for q in paraphrases) >= 0.9 * len(paraphrases)
    assert len({q.id for q in QUESTIONS}) == len(QUESTIONS)


@pytest.mark.parametrize("question", [q for q in QUESTIONS if q.answerable and not q.variant_of], ids=lambda q: q.id)
def test_each_answerable_question_has_its_evidence_in_a_source_and_a_gold_string_in_its_evidence(question):
    assert any(question.evidence in ARTICLES[source] for source in question.sources)
    assert any(fold(gold) in fold(question.evidence) for gold in question.answers)


def test_the_split_is_a_fixed_hash_of_the_id_and_a_typo_goes_with_its_original():
    assert [split_of(i) for i in ("s001", "s002", "n001", "n002")] == [split_of(i) for i in ("s001", "s002", "n001", "n002")]
    for question in QUESTIONS:
        if question.variant_of:
            assert question.split == split_of(question.variant_of)
    shares = Counter(q.split for q in QUESTIONS if not q.variant_of)
    assert 0.35 < shares["heldout"] / sum(shares.values()) < 0.65


def test_loading_one_split_keeps_only_its_questions(tmp_path):
    tune, heldout = load_questions(DATA / "qa_set.jsonl", "tune"), load_questions(DATA / "qa_set.jsonl", "heldout")
    assert {q.id for q in tune} | {q.id for q in heldout} == {q.id for q in QUESTIONS}
    assert not {q.id for q in tune} & {q.id for q in heldout}


def test_typo_variants_differ_from_their_originals_by_a_few_letters():
    by_id = {q.id: q for q in QUESTIONS}
    for variant in (q for q in QUESTIONS if q.variant_of):
        original = by_id[variant.variant_of].question
        assert variant.question != original and abs(len(variant.question) - len(original)) <= 2
        assert sum(a != b for a, b in zip(variant.question.split(), original.split(), strict=False)) <= 2


def test_the_set_file_is_what_the_builder_makes(tmp_path, monkeypatch):
    """tests/data/qa_set.jsonl is derived (overlap, typo variants): it must match its sources."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("builder", DATA.parent.parent / "scripts" / "build_question_set.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    monkeypatch.setattr(builder, "DATA", tmp_path)
    (tmp_path / "questions").symlink_to(DATA / "questions")
    builder.main()
    assert (tmp_path / "qa_set.jsonl").read_text(encoding="utf-8") == (DATA / "qa_set.jsonl").read_text(encoding="utf-8")
    json.loads((tmp_path / "qa_set.jsonl").read_text(encoding="utf-8").splitlines()[0])
