from rag.sentences import split_sentences


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
