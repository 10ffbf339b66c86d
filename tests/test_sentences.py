from rag.text.sentences import MAX_SENTENCE_CHARS, split_sentences


def sentences(text: str) -> list[str]:
    return [text[start:end] for start, end in split_sentences(text)]


def test_splits_plain_sentences_and_keeps_offsets():
    text = "The PM spoke. He left! Did he return? Yes."
    assert sentences(text) == ["The PM spoke.", "He left!", "Did he return?", "Yes."]


def test_military_titles_do_not_end_a_sentence():
    text = "According to Director Lt. Gen. Ho Quang Tuan, output rose. It was a record."
    assert sentences(text) == ["According to Director Lt. Gen. Ho Quang Tuan, output rose.", "It was a record."]


def test_numbered_reference_does_not_end_a_sentence():
    text = "It follows Resolution No. 08-NQ/TW of the Politburo. Work began."
    assert sentences(text) == ["It follows Resolution No. 08-NQ/TW of the Politburo.", "Work began."]


def test_no_at_the_end_of_a_sentence_still_splits():
    assert sentences("The answer was No. The vote failed.") == ["The answer was No.", "The vote failed."]


def test_full_stop_inside_closing_quote_ends_after_the_quote():
    text = "“We thank Prime Minister Phạm Minh Chính.” The delegation then left."
    assert sentences(text) == ["“We thank Prime Minister Phạm Minh Chính.”", "The delegation then left."]


def test_quoted_name_followed_by_lowercase_is_one_sentence():
    text = "“Thank you, Phạm Minh Chính.” said the minister."
    assert sentences(text) == [text]


def test_decimal_numbers_and_initials_do_not_split():
    text = "Growth reached 7.09 per cent, said H. Nguyen of the U.S. office. Exports rose 3.5 times."
    assert sentences(text) == [
        "Growth reached 7.09 per cent, said H. Nguyen of the U.S. office.",
        "Exports rose 3.5 times.",
    ]


def test_line_breaks_end_sentences_unless_text_is_hard_wrapped():
    long_line = "Party chief requests greater efforts to build stronger, dual-use defence industry"
    body = "Along with researching and manufacturing modern weapons the department must act. " * 2
    assert sentences(long_line + "\n" + body.strip()) [0] == long_line
    wrapped = "The minister said the plan\nwould continue next year.\n\nA new paragraph."
    assert sentences(wrapped) == ["The minister said the plan\nwould continue next year.", "A new paragraph."]


def test_region_offsets_point_into_the_whole_text():
    text = "HEADER\n\nFirst one. Second one."
    spans = split_sentences(text, start=8)
    assert [text[s:e] for s, e in spans] == ["First one.", "Second one."]


def test_chinese_and_japanese_full_stops_end_sentences_without_a_space():
    text = "国防工业发展迅速。越南建造了船舶！是吗？Yes."
    assert [text[s:e] for s, e in split_sentences(text)] == ["国防工业发展迅速。", "越南建造了船舶！", "是吗？", "Yes."]


def test_text_with_no_sentence_end_is_cut_into_bounded_pieces_at_spaces():
    text = " ".join(f"word{i}" for i in range(2000))
    spans = split_sentences(text)
    assert all(e - s <= MAX_SENTENCE_CHARS for s, e in spans) and len(spans) > 10
    assert " ".join(text[s:e] for s, e in spans) == text  # cut at spaces, nothing lost
    unbroken = "x" * 2500
    assert [e - s for s, e in split_sentences(unbroken)] == [1000, 1000, 500]
