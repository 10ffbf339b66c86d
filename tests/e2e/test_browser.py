"""The web page in headless Chromium (Debian's `chromium`, driven by Playwright) over a live server.

One server for the module: a copy of the seeds indexed with the packaged model, on a free
loopback port. Screenshots go to test-artifacts/ (not committed).
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from gradio_client import Client, handle_file
from playwright.sync_api import Browser, Page, expect
from served import ARTIFACTS, ROOT, chromium, served

pytestmark = pytest.mark.browser

ABSTENTION = "The indexed articles do not answer this question."
HOA_LAC_ARTICLE = "003_62729c1e8f798b4f"
NEW_ARTICLE = """ date 2026-04-02 HÀ NỘI — The Lotus Orchestra opened a concert hall in Đà Nẵng
on Thursday.

The Lotus Orchestra's concert hall in Đà Nẵng has 1,250 seats and a pipe organ built in Lyon.

Conductor Nguyễn Thị Mai said the first season would include twelve concerts.
"""


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("browser") / "seeds"
    shutil.copytree(ROOT / "seeds", folder)
    return folder


@pytest.fixture(scope="module")
def url(seeds: Path) -> Iterator[str]:
    """`rag serve` on a free loopback port, building the index of the seeds copy first."""
    with served(seeds) as address:
        yield address


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as opened:
        yield opened


@pytest.fixture
def page(browser: Browser, url: str) -> Iterator[Page]:
    """A fresh session on a desktop-sized window; fails the test if the page reaches off the machine."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    outside: list[str] = []
    page.on("request", lambda request: outside.append(request.url)
            if urlparse(request.url).hostname not in (None, "127.0.0.1") else None)
    page.goto(url)
    expect(page.locator("#index-panel table.articles")).to_be_visible()
    yield page
    context.close()
    assert outside == [], f"the page fetched from outside the machine: {outside}"


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def ask(page: Page, question: str) -> None:
    """Type the question and press Enter; wait for its turn at the top of the conversation."""
    box = page.locator("#question textarea")
    box.fill(question)
    box.press("Enter")
    expect(page.locator("#conversation .turn").first.locator(".question")).to_contain_text(question)


def file_text(folder: Path, article_id: str) -> str:
    [path] = [path for path in folder.iterdir() if path.stem == article_id]
    return path.read_bytes().decode("utf-8")


def test_answer_cites_and_highlights_the_quote_from_the_file(page: Page, seeds: Path) -> None:
    ask(page, "Which officials attended the March 15 meeting at Hoa Lac?")
    turn = page.locator("#conversation .turn").first

    expect(turn.locator(".answer")).to_contain_text(re.compile(r"\S.*\[1\]"))
    sources = turn.locator(".sources li.source")
    cited = sources.evaluate_all("items => items.map(item => item.dataset.articleId)")
    assert HOA_LAC_ARTICLE in cited
    titles = sources.locator(".title").all_inner_texts()
    assert any(title.startswith("On the afternoon of March 15, at Hoa Lac") for title in titles)
    quotes = turn.locator(".sources mark").evaluate_all(
        "marks => marks.map(m => [m.dataset.n, +m.dataset.start, +m.dataset.end, m.textContent,"
        " m.closest('li').dataset.articleId])")
    assert quotes
    for _, start, end, quote, article_id in quotes:
        assert quote and file_text(seeds, article_id)[start:end] == quote

    marker = turn.locator("a.marker").first
    n = marker.inner_text().strip("[]")
    marker.click()
    expect(page).to_have_url(re.compile(rf"#turn-1-source-{n}$"))
    expect(page.locator(f"#turn-1-source-{n}")).to_be_in_viewport()
    screenshot(page, "answer.png")


def test_unanswerable_question_is_an_abstention_with_related_reading(page: Page) -> None:
    page.locator("#question textarea").fill("Who won the 2022 FIFA World Cup?")
    page.locator("#ask").click()
    turn = page.locator("#conversation .turn").first

    expect(turn.locator(".abstention")).to_have_text(ABSTENTION)
    expect(turn.locator(".related h4")).to_have_text("Related passages")
    expect(turn.locator(".sources")).to_have_count(0)
    expect(turn.locator("a.marker")).to_have_count(0)
    screenshot(page, "abstention.png")


def test_empty_question_is_a_short_message(page: Page) -> None:
    page.locator("#question textarea").press("Enter")

    expect(page.locator("#conversation .error")).to_have_text(
        "the question is empty: type a question about the articles")
    expect(page.get_by_text("Traceback")).to_have_count(0)


def test_example_question_is_asked_on_click(page: Page) -> None:
    example = page.locator("#examples button").first
    question = example.inner_text()
    example.click()

    expect(page.locator("#conversation .turn .question").first).to_contain_text(question)
    expect(page.locator("#conversation .turn")).to_have_count(1)


def test_filters_limit_the_sources(page: Page) -> None:
    page.locator("#filters").click()
    page.locator("#article-filter input").click()
    page.get_by_role("option", name=re.compile("002_2158886989b67df7")).click()
    page.keyboard.press("Escape")
    page.locator("#date-from input").fill("2025-01-01")
    page.locator("#date-to input").fill("2025-12-31")

    ask(page, "What did the Prime Minister say about the defence industry?")

    cited = page.locator("#conversation .turn li.source").evaluate_all(
        "items => items.map(item => item.dataset.articleId)")
    assert cited and set(cited) == {"002_2158886989b67df7"}
    expect(page.locator("#conversation .turn .source-head .date").first).to_have_text("2025-03-15")


def test_uploaded_article_is_indexed_and_answers(page: Page, tmp_path: Path, seeds: Path) -> None:
    upload = tmp_path / "lotus hall.txt"
    upload.write_text(NEW_ARTICLE, encoding="utf-8")

    page.locator("#upload input[type=file]").set_input_files(str(upload))

    status = page.locator("#rebuild-status")
    expect(status.locator(".switched")).to_contain_text("Rebuilt at", timeout=60_000)
    expect(status.locator(".switched")).to_contain_text("Questions are now answered from the new index")
    expect(status.locator("li.added")).to_contain_text("lotus hall.txt: added as")
    expect(page.locator("#index-panel")).to_contain_text("lotus_hall")
    assert (seeds / "lotus_hall.txt").read_text(encoding="utf-8") == NEW_ARTICLE

    ask(page, "How many seats does the Lotus Orchestra's concert hall in Da Nang have?")
    turn = page.locator("#conversation .turn").first
    expect(turn.locator(".answer")).to_contain_text("1,250")
    expect(turn.locator(".sources li.source").first).to_have_attribute("data-article-id", "lotus_hall")
    screenshot(page, "after-upload.png")


def test_narrow_screen_does_not_overflow(page: Page) -> None:
    page.set_viewport_size({"width": 375, "height": 812})
    ask(page, "What title did To Lam present to the General Department of Defence Industry?")
    page.locator("#filters").click()

    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"page is {widths[0]} px wide in a {widths[1]} px window"
    screenshot(page, "narrow.png")


def test_named_endpoints_answer_gradio_client(url: str, tmp_path: Path) -> None:
    client = Client(url, verbose=False)

    answer = client.predict("Who is the Director of the General Department of Defence Industry?",
                            api_name="/ask")
    assert not answer["abstained"] and answer["citations"]
    assert answer["citations"][0]["article_id"] == "004_0ad313e58527b596"
    hits = client.predict("Hoa Lac meeting", api_name="/search")
    assert [hit["rank"] for hit in hits] == list(range(1, len(hits) + 1))
    status = client.predict(api_name="/index_status")
    assert status["counts"]["articles"] >= 5 and status["model"]

    refused = tmp_path / "notes.txt"
    refused.write_bytes(b"\xc3\x28 not utf-8")  # (\xff\xfe would be a UTF-16 byte order mark)
    result = client.predict([handle_file(str(refused))], api_name="/add_articles")
    assert result["files"] == [{"name": "notes.txt", "status": "refused", "saved_as": None,
                                "message": "notes.txt: not valid UTF-8 at byte 0 (line 1); "
                                           "re-save the file as UTF-8"}]
    assert result["update"] is None


def test_a_follow_up_is_answered_from_the_thread_and_a_reload_keeps_it(page: Page) -> None:
    ask(page, "Who chaired the meeting at Hoa Lac?")
    ask(page, "And when was it?")
    newest = page.locator("#conversation .turn").first
    expect(newest.locator(".corrections")).to_contain_text("Searched for: And when was it? (chaired meeting Hoa Lac)")
    expect(newest.locator("li.source").first).to_contain_text(HOA_LAC_ARTICLE)
    expect(page.locator("#thread-list")).to_contain_text("Who chaired the meeting at Hoa Lac?")

    page.reload()
    expect(page.locator("#conversation .turn")).to_have_count(2)
    expect(page.locator("#conversation .turn").first.locator(".question")).to_contain_text("And when was it?")
    screenshot(page, "follow-up-after-reload.png")

    page.locator("#new-thread").click()
    expect(page.locator("#conversation .turn")).to_have_count(0)
    page.locator("#thread-list label", has_text="Who chaired the meeting at Hoa Lac?").click()
    expect(page.locator("#conversation .turn")).to_have_count(2)


def test_a_month_only_range_says_which_undated_articles_it_left_out(page: Page) -> None:
    page.locator("#filters").click()
    page.locator("#date-from input").fill("March 2025")
    page.locator("#date-to input").fill("March 2025")

    ask(page, "Who chaired the meeting at Hoa Lac?")

    notice = page.locator("#conversation .turn").first.locator(".notice")
    expect(notice).to_contain_text("article(s) of unknown date")
    expect(notice).to_contain_text(HOA_LAC_ARTICLE)
    dates = page.locator("#conversation .turn").first.locator(".source-head .date").all_inner_texts()
    assert dates and all(date.startswith("2025-03") for date in dates)  # the whole month, and only it


def test_a_source_opens_its_whole_article_in_the_library_with_the_quote_marked(page: Page, seeds: Path) -> None:
    ask(page, "Who chaired the meeting at Hoa Lac?")
    source = page.locator("#conversation .turn").first.locator("li.source").first
    quote = source.locator("mark").first.inner_text()

    source.locator("a.open-article").click()

    view = page.locator("#library-view .library-article")
    expect(view).to_be_visible()
    expect(view.locator("#library-mark")).to_have_text(quote)
    expect(view.locator(".meta")).to_contain_text(HOA_LAC_ARTICLE)
    assert view.locator(".library-text").inner_text().strip() == file_text(seeds, HOA_LAC_ARTICLE).strip()


def test_the_progress_of_a_long_upload_advances_while_it_is_embedded(page: Page, tmp_path: Path) -> None:
    body = "\n".join(f"The yard in Hai Phong delivered patrol boat number {n} to the coast guard this spring."
                     for n in range(700))
    upload = tmp_path / "hai_phong_deliveries.txt"
    upload.write_text("Hai Phong yard deliveries\n\n" + body, encoding="utf-8")

    page.locator("#upload input[type=file]").set_input_files(str(upload))
    seen: set[str] = set()
    deadline = time.monotonic() + 120
    while "Rebuilt at" not in page.locator("#rebuild-status").inner_text() and time.monotonic() < deadline:
        seen.update(re.findall(r"(\d+)/\d+ texts", page.locator("#upload").inner_text()))
        time.sleep(0.05)

    assert "Rebuilt at" in page.locator("#rebuild-status").inner_text()
    assert len(seen - {"0"}) >= 2, seen  # at least two distinct values between the start and the end


def test_the_library_opens_an_article_and_removes_one_after_confirmation(page: Page, seeds: Path) -> None:
    """Last in this module: it removes a seed from the served copy."""
    article_id = "000_74a00811c9a9f887"
    page.locator("#library").click()
    page.locator("#library-choice input").click()
    page.keyboard.type(article_id)  # the list filters by title or id
    page.get_by_role("option", name=re.compile(article_id)).click()
    expect(page.locator("#library-view .library-article h3")).to_be_visible()
    expect(page.locator("#library-view .meta")).to_contain_text(f"{article_id} · file {article_id}.txt")

    page.locator("#remove-article").click()
    expect(page.locator("#rebuild-status")).to_contain_text("Yes, remove it")
    assert (seeds / f"{article_id}.txt").exists()
    page.locator("#confirm-removal input").check()
    page.locator("#remove-article").click()
    expect(page.locator("#rebuild-status")).to_contain_text("was moved to removed/", timeout=60_000)
    assert not (seeds / f"{article_id}.txt").exists() and (seeds.parent / "removed" / f"{article_id}.txt").exists()
    expect(page.locator("#index-panel")).not_to_contain_text(article_id)
