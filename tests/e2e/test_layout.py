"""The page's layout and colours in headless Chromium (Debian's `chromium`, driven by Playwright):
nothing overflows a phone, the newest answer is on screen, text is readable in light and dark
mode (WCAG AA, measured from the rendered colours), the Ask button shows its focus.

One server for the module, started as in test_browser.py. Screenshots of the main states go to
test-artifacts/ (git-ignored); the README's picture, docs/screenshot.png, is written when it is
missing or when RAG_README_SCREENSHOT=1.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator

import pytest
from PIL import Image
from playwright.sync_api import Browser, Locator, Page, expect
from served import ARTIFACTS, ROOT, chromium, served

pytestmark = pytest.mark.browser

README_SCREENSHOT = ROOT / "docs" / "screenshot.png"
README_SCREENSHOT_BYTES = 150_000
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
AA = 4.5
"""WCAG AA: the least contrast ratio for text."""
FOCUS_CONTRAST = 3.0
"""WCAG 2.2 (1.4.11, 2.4.13): the least contrast of a focus indicator with what is around it."""
QUESTION = "Who chaired the meeting at Hoa Lac High-Tech Park?"
EMPTY_QUESTION = "the question is empty: type a question about the articles"


# --- the server and the browser (tests/e2e/served.py) -------------------------------------------


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`rag serve` over a copy of the seeds on a free loopback port, building its index first."""
    folder = tmp_path_factory.mktemp("layout")
    shutil.copytree(ROOT / "seeds", folder / "seeds")
    with served(folder / "seeds") as address:
        yield address


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as opened:
        yield opened


def open_page(browser: Browser, url: str, viewport: dict[str, int], scheme: str = "light") -> Page:
    """A fresh session (nothing kept from another test) in `scheme`, set the way Gradio reads it:
    `?__theme=` (Gradio then puts `.dark` on <body>), and the system preference to match."""
    context = browser.new_context(viewport=viewport, color_scheme=scheme)
    page = context.new_page()
    page.goto(f"{url}?__theme={scheme}")
    expect(page.locator("#index-panel table.articles")).to_be_visible()
    assert page.evaluate("document.body.classList.contains('dark')") == (scheme == "dark")
    return page


def ask(page: Page, question: str) -> Locator:
    """Ask and wait for the question's turn at the top of the conversation."""
    box = page.locator("#question textarea")
    box.fill(question)
    box.press("Enter")
    turn = page.locator("#conversation .turn").first
    expect(turn.locator(".question")).to_contain_text(question)
    expect(turn.locator(".meta")).to_be_visible()  # the answer is complete, not a draft
    return turn


def open_accordions(page: Page) -> None:
    """Open every closed panel (Filters and whatever else the page folds away)."""
    closed = page.locator(".gr-accordion > button.label-wrap:not(.open)")
    for _ in range(closed.count()):
        closed.first.click()
    expect(closed).to_have_count(0)


def save(page: Page, name: str, full_page: bool = True) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=full_page)


# --- measuring in the page --------------------------------------------------------------------

OVERFLOWING_CONTROLS = """() => {
  const width = document.documentElement.clientWidth;
  const out = [];
  for (const el of document.querySelectorAll('input, button, select, textarea, summary, [role=button]')) {
    const box = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    if (box.width === 0 || box.height === 0 || style.visibility === 'hidden') continue;
    if (box.left < -0.5 || box.right > width + 0.5) {
      const block = el.closest('[id]');
      out.push(`${el.tagName.toLowerCase()} ${JSON.stringify((el.innerText || el.placeholder ||
        el.getAttribute('aria-label') || '').trim().slice(0, 40))} in #${block ? block.id : '?'}: ` +
        `${Math.round(box.left)}..${Math.round(box.right)} px of ${width}`);
    }
  }
  return out;
}"""

# The colour of an element's text and the background it is drawn on: the element's own
# background and its ancestors' composited from the first opaque one (the page when none is).
COLOURS = """(el) => {
  const rgba = (text) => {
    const [r, g, b, a = 1] = text.match(/[\\d.]+/g).map(Number);
    return [r, g, b, a];
  };
  const layers = [];
  for (let node = el; node; node = node.parentElement) {
    const colour = rgba(getComputedStyle(node).backgroundColor);
    if (colour[3] > 0) layers.push(colour);
    if (colour[3] >= 1) break;
  }
  let background = [255, 255, 255];
  for (const [r, g, b, a] of layers.reverse()) {
    background = [r * a + background[0] * (1 - a), g * a + background[1] * (1 - a), b * a + background[2] * (1 - a)];
  }
  const [r, g, b, a] = rgba(getComputedStyle(el).color);
  const text = [r * a + background[0] * (1 - a), g * a + background[1] * (1 - a), b * a + background[2] * (1 - a)];
  return {text, background};
}"""


def luminance(rgb: list[float]) -> float:
    """WCAG relative luminance of an sRGB colour (0-255 channels)."""
    def linear(channel: float) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (linear(channel) for channel in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(first: list[float], second: list[float]) -> float:
    lighter, darker = sorted((luminance(first), luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def text_contrast(element: Locator) -> float:
    colours = element.evaluate(COLOURS)
    return contrast(colours["text"], colours["background"])


# --- tests ------------------------------------------------------------------------------------


def test_phone_has_no_horizontal_overflow_and_shows_the_newest_answer(browser: Browser, url: str) -> None:
    page = open_page(browser, url, PHONE)
    open_accordions(page)
    expect(page.locator("#date-to").locator("input, textarea").first).to_be_visible()  # the filters are open

    assert page.evaluate(OVERFLOWING_CONTROLS) == []
    turn = ask(page, QUESTION)  # asked with the Filters panel open

    expect(turn.locator(".question")).to_be_in_viewport(ratio=1)
    expect(turn.locator(".answer")).to_be_in_viewport()
    page.locator("#conversation details.more").first.locator("summary").click()
    assert page.evaluate(OVERFLOWING_CONTROLS) == []
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1] == PHONE["width"], f"the page is {widths[0]} px wide in a {widths[1]} px window"
    save(page, "layout-phone.png")
    page.context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_errors_notices_and_highlights_are_readable(browser: Browser, url: str, scheme: str) -> None:
    page = open_page(browser, url, DESKTOP, scheme)
    page.locator("#filters").click()
    page.locator("#date-from").locator("input, textarea").first.fill("2025-01-01")
    page.locator("#date-to").locator("input, textarea").first.fill("2025-12-31")
    turn = ask(page, "What did the Prime Minister say about the defence industry?")
    notice, mark = turn.locator(".notice").first, turn.locator(".sources mark").first
    expect(notice).to_contain_text("undated")  # the date range leaves the undated articles out
    expect(mark).to_be_visible()

    page.locator("#question textarea").press("Enter")  # an empty question: an error above the turns
    error = page.locator("#conversation p.error")
    expect(error).to_have_text(EMPTY_QUESTION)

    for name, element in (("error", error), ("notice", notice), ("highlighted quote", mark)):
        ratio = text_contrast(element)
        assert ratio >= AA, f"the {name} text is {ratio:.2f}:1 on its background in {scheme} mode"
    if scheme == "dark":  # a dim highlight, not a bright yellow block on a dark page
        assert luminance(mark.evaluate(COLOURS)["background"]) < 0.1
    save(page, f"layout-{scheme}-error.png")
    page.context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_ask_button_shows_a_clear_focus_ring(browser: Browser, url: str, scheme: str) -> None:
    page = open_page(browser, url, DESKTOP, scheme)
    page.locator("#question textarea").focus()
    page.keyboard.press("Tab")

    ask_button = page.locator("#ask")
    expect(ask_button).to_be_focused()
    ring = ask_button.evaluate("""(el) => { const s = getComputedStyle(el); return {style: s.outlineStyle,
        width: parseFloat(s.outlineWidth), offset: parseFloat(s.outlineOffset), colour: s.outlineColor}; }""")
    # a solid ring at least 2 px thick, drawn off the button on the page around it, where it
    # stands out from what was there before the focus: the page's background
    assert ring["style"] == "solid" and ring["width"] >= 2 and ring["offset"] >= 2, ring
    ring_colour = [float(part) for part in ring["colour"].strip("rgba()").split(",")[:3]]
    page_colour = ask_button.locator("xpath=..").evaluate(COLOURS)["background"]
    ratio = contrast(ring_colour, page_colour)
    assert ratio >= FOCUS_CONTRAST, f"the focus ring is {ratio:.2f}:1 on the page in {scheme} mode"
    ARTIFACTS.mkdir(exist_ok=True)
    box = ask_button.bounding_box()
    around = {"x": box["x"] - 16, "y": box["y"] - 16, "width": box["width"] + 32, "height": box["height"] + 32}
    page.screenshot(path=str(ARTIFACTS / f"layout-{scheme}-focus.png"), clip=around)
    page.context.close()


def test_sources_and_related_passages_are_compact_cards(browser: Browser, url: str) -> None:
    """A source card shows its title, date, article id and quote, the passage folded; so does a
    related passage under an abstention. Screenshots: the desktop page, and the README's."""
    page = open_page(browser, url, DESKTOP)
    card = ask(page, QUESTION).locator(".sources li.source").first
    for part in (".title", ".date", ".article-id", "p.quote mark"):
        expect(card.locator(part).first).to_be_visible()
    expect(card.locator("details.more blockquote.passage").first).to_be_hidden()
    save(page, "layout-desktop-light.png")

    picture = page.screenshot(full_page=False, clip={"x": 0, "y": 0, "width": DESKTOP["width"], "height": 820})
    small = Image.open(io.BytesIO(picture)).convert("RGB").quantize(  # a 128-colour palette: a third the size
        colors=128, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    written = io.BytesIO()
    small.save(written, format="PNG", optimize=True)
    assert len(written.getvalue()) < README_SCREENSHOT_BYTES, f"{len(written.getvalue())} bytes"
    (ARTIFACTS / "readme-screenshot.png").write_bytes(written.getvalue())
    if os.environ.get("RAG_README_SCREENSHOT") == "1" or not README_SCREENSHOT.exists():
        README_SCREENSHOT.write_bytes(written.getvalue())

    related = ask(page, "Who won the 2022 FIFA World Cup?").locator(".related li.card")
    expect(related.first.locator("p.quote")).to_be_visible()
    expect(related.locator("blockquote.passage:visible")).to_have_count(0)
    ids = related.evaluate_all("cards => cards.map(card => card.dataset.articleId)")
    assert ids and len(ids) == len(set(ids)), ids  # one card per article, not one per passage
    page.context.close()


def test_with_filters_open_on_a_short_desktop_the_new_answer_is_brought_into_view(browser, url) -> None:  # noqa: ANN001
    context = browser.new_context(viewport={"width": 1280, "height": 600})
    page = context.new_page()
    page.goto(url)
    page.locator("#filters").click()
    page.locator("#question textarea").fill(QUESTION)
    page.locator("#question textarea").press("Enter")
    turn = page.locator("#conversation .turn").first
    expect(turn.locator(".question")).to_contain_text(QUESTION)
    page.wait_for_function("() => { const t = document.querySelector('#conversation .turn');"
                           " return t && t.getBoundingClientRect().top < window.innerHeight * 0.6; }", timeout=5000)
    context.close()
