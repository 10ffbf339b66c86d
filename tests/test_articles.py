import datetime as dt
from pathlib import Path

import pytest
from conftest import SEEDS

from rag import ArticleError, Config, load_articles, read_article
from rag.text.articles import parse_article, shorten_title

CONFIG = Config()


def seed(stem: str):
    return read_article(SEEDS / f"{stem}.txt", CONFIG)


@pytest.mark.parametrize(
    ("stem", "date"),
    [
        ("000_74a00811c9a9f887", dt.date(2025, 12, 24)),
        ("001_b4864911fd882270", dt.date(2026, 3, 12)),
        ("002_2158886989b67df7", dt.date(2025, 3, 15)),
        ("003_62729c1e8f798b4f", None),
        ("004_0ad313e58527b596", None),
    ],
)
def test_seed_dates_come_from_the_prefix_only(stem, date):
    article = seed(stem)
    assert article.id == stem
    assert article.date == date


def test_date_prefix_is_metadata_not_body():
    article = seed("000_74a00811c9a9f887")
    assert article.text.startswith(" date 2025-12-24 ")
    assert article.body.startswith("HÀ NỘI — Prime Minister Phạm Minh Chính urged")
    assert "date 2025" not in article.body


def test_boilerplate_is_skipped_and_headline_is_the_title():
    article = seed("002_2158886989b67df7")
    assert article.title == "Defence industry should become a spearhead of national industry: PM"
    assert "Politics & Law" not in article.body
    assert "March 15, 2025 - 21:20" not in article.body
    assert article.body.startswith("The PM highlighted the importance")


def test_first_line_headline():
    article = seed("004_0ad313e58527b596")
    assert article.title == "Party chief requests greater efforts to build stronger, dual-use defence industry"
    assert article.body.startswith("Along with researching")


@pytest.mark.parametrize("stem", ["000_74a00811c9a9f887", "001_b4864911fd882270", "003_62729c1e8f798b4f"])
def test_titles_without_headline_come_from_the_first_sentence(stem):
    article = seed(stem)
    assert not article.title.startswith("HÀ NỘI")
    assert 20 <= len(article.title) <= 101
    first_words = " ".join(article.title.rstrip("…").split()[:5])
    assert first_words in article.body[:200]


def test_heading_is_the_headline_or_the_whole_first_sentence():
    assert seed("002_2158886989b67df7").heading == seed("002_2158886989b67df7").title
    lede = seed("003_62729c1e8f798b4f")
    assert lede.title.endswith("…") and "Pham Minh Chinh" not in lede.title
    assert lede.heading.startswith(lede.title.rstrip("…"))
    assert "Prime Minister Pham Minh Chinh chaired a meeting" in lede.heading  # cut from the title, kept for matching


def test_title_of_000_drops_the_place_dateline():
    assert seed("000_74a00811c9a9f887").title.startswith("Prime Minister Phạm Minh Chính urged the Ministry")


def test_text_is_the_file_decoded_exactly():
    for path in SEEDS.glob("*.txt"):
        article = read_article(path, CONFIG)
        assert article.text == path.read_bytes().decode("utf-8")


def test_shorten_title_prefers_a_late_clause_boundary():
    sentence = "On the afternoon of March 15, at Hoa Lac High-Tech Park (Hanoi), the Prime Minister chaired a long meeting with many people."
    assert shorten_title(sentence) == "On the afternoon of March 15, at Hoa Lac High-Tech Park (Hanoi)…"
    assert shorten_title("A short sentence.") == "A short sentence"


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("empty.txt", b"", "empty.txt: file is empty"),
        ("blank.txt", b"  \n\t\n", "blank.txt: file holds only whitespace"),
        ("image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00", "image.txt: looks like a binary file (NUL byte at offset 8)"),
        ("latin1.txt", "Line one\nCafé Hà Nội".encode("latin-1", errors="replace"), "latin1.txt: not valid UTF-8 at byte 12 (line 2)"),
        ("baddate.txt", b" date 2025-13-40 Some text here.", "baddate.txt: date prefix '2025-13-40' is not a date"),
    ],
)
def test_bad_files_are_refused_with_a_message_naming_file_and_problem(tmp_path, name, data, message):
    path = write(tmp_path, name, data)
    with pytest.raises(ArticleError) as caught:
        read_article(path, CONFIG)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_oversized_file_is_refused(tmp_path):
    path = write(tmp_path, "big.txt", b"word " * 300)
    with pytest.raises(ArticleError, match=r"big.txt: file is 0.0 MB, over the 0.0 MB limit"):
        read_article(path, Config(max_file_bytes=1000))


def test_unreadable_file_is_refused(tmp_path):
    path = tmp_path / "folder.txt"
    path.mkdir()
    with pytest.raises(ArticleError, match=r"folder.txt: cannot be read"):
        read_article(path, CONFIG)


def test_one_bad_file_never_stops_the_others(tmp_path):
    write(tmp_path, "good.txt", b"A good article. It has two sentences.")
    write(tmp_path, "bad.txt", b"")
    write(tmp_path, "notes.md", b"# Heading line\n\nMarkdown articles are read too.")
    write(tmp_path, "photo.jpg", b"\xff\xd8")
    write(tmp_path, ".hidden.txt", b"Hidden files are reported, not read.")
    write(tmp_path, ".notes.md.swp", b"an editor's swap file")
    report = load_articles([tmp_path], CONFIG)
    assert sorted(a.id for a in report.articles) == ["good", "notes"]
    assert list(report.failures.values()) == [f"{tmp_path / 'bad.txt'}: file is empty"]
    assert report.skipped == [
        f"{tmp_path / '.hidden.txt'}: skipped, a hidden file (rename it without the leading dot to index it)",
        f"{tmp_path / 'photo.jpg'}: skipped, only .txt and .md files are read"]


def test_a_heading_is_cut_at_a_word_so_it_cannot_grow_with_the_file():
    text = " ".join(["word"] * 5000)  # one line, no sentence end
    article = parse_article(text, article_id="long", source=Path("long.txt"), content_hash="x")
    assert len(article.heading) <= 400 and article.heading.endswith("word") and len(article.title) <= 101


def test_missing_path_is_reported(tmp_path):
    report = load_articles([tmp_path / "nope"], CONFIG)
    assert list(report.failures.values()) == [f"{tmp_path / 'nope'}: no such file or folder"]


def test_same_id_twice_is_reported(tmp_path):
    write(tmp_path, "same.txt", b"One article.")
    write(tmp_path, "same.md", b"Another article.")
    report = load_articles([tmp_path], CONFIG)
    assert len(report.articles) == 1
    assert "article id 'same' is also used by" in next(iter(report.failures.values()))


def test_dateline_gives_the_date_when_there_is_no_prefix(tmp_path):
    path = write(tmp_path, "d.txt", "Home News\n\nA headline here\n\nMarch 3, 2026 - 10:00\nThe body starts here.".encode())
    article = read_article(path, CONFIG)
    assert article.date == dt.date(2026, 3, 3)
    assert article.title == "A headline here"
    assert article.body == "The body starts here."


def test_single_short_line_is_body_not_headline(tmp_path):
    article = read_article(write(tmp_path, "s.txt", b"Just a line"), CONFIG)
    assert article.body == "Just a line"
    assert article.title == "Just a line"


def test_a_utf8_byte_order_mark_stays_out_of_the_title(tmp_path: Path) -> None:
    """Windows editors may start a UTF-8 file with a byte order mark: it is not part of the
    headline, and the offsets still index the file's text."""
    path = tmp_path / "marked.txt"
    path.write_bytes("\ufeffHarbour opens new pier\n\nThe port of Hai Phong opened a new pier on Monday.\n".encode())
    article = read_article(path, Config())
    assert article.title == "Harbour opens new pier"
    assert article.text[article.body_start:].startswith("The port of Hai Phong")
    assert path.read_bytes().decode("utf-8")[article.body_start:] == article.text[article.body_start:]
