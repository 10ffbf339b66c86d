"""LLM answers against a fake OpenAI-compatible endpoint on 127.0.0.1: what the verifier keeps
and flags, the fallbacks and their notices, streaming, configuration, and the CLI.

No real model and no network: the endpoint is an http.server thread started here that streams
canned replies. A reply's "{snippet}" becomes the number of the passage (as numbered in the
prompt it received) that contains the snippet, and "{!snippet}" the first one that does not,
so the replies cite right or wrong passages whatever the retrieval order.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import DATA, SEEDS, coverage_answerability, invoke_cli

from rag import (
    Answer,
    ConfigError,
    GeneratorError,
    HashingEmbedder,
    Index,
    LlamaCppGenerator,
    LLMSettings,
    OpenAICompatibleGenerator,
    QueryError,
    build_index,
    generator_from_env,
)
from rag.answer.extractive import NOT_ANSWERED
from rag.answer.generators import without_repetition
from rag.answer.prompt import SYSTEM_PROMPT, Claim, parse_claims
from rag.answer.verification import VerifierSettings, check_claims, facts
from rag.eval.claims import ClaimChecker, load_claims, unsupported_scores

SHIPS = "How many ships has the General Department of Defence Industry built?"
BUDGET = "What is Vietnam's defence budget for 2026?"
CORRECT = "It has built nearly 140 ships and repaired over 380 military vessels [{nearly 140 ships}]."
LLM_ENV = ("RAG_LLM_URL", "RAG_LLM_MODEL", "RAG_LLM_API_KEY", "RAG_LLM_GGUF", "RAG_LLM_TIMEOUT")


@dataclass
class FakeEndpoint:
    """A chat completions endpoint that streams `reply` the way `behaviour` says."""

    url: str = ""
    reply: str = ""
    behaviour: str = "stream"
    requests: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def respond(self, handler: BaseHTTPRequestHandler) -> None:
        body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
        self.requests.append({"path": handler.path, "headers": dict(handler.headers), "body": body})
        text = fill(self.reply, body["messages"][-1]["content"])
        if self.behaviour == "slow":
            self.release.wait(30)
            return
        if self.behaviour == "error":
            send(handler, 500, "application/json", json.dumps({"error": {"message": "model crashed"}}))
        elif self.behaviour == "garbage":
            send(handler, 200, "text/html", "<html><body>Welcome to nginx!</body></html>")
        elif self.behaviour == "json":
            send(handler, 200, "application/json",
                 json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}))
        else:
            events = [{"choices": [{"delta": {"role": "assistant", "content": None}}]}]
            events += [{"choices": [{"delta": {"content": piece}}]} for piece in re.findall(r"\S+\s*", text)]
            send(handler, 200, "text/event-stream",
                 "".join(f"data: {json.dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n")


def send(handler: BaseHTTPRequestHandler, status: int, content_type: str, body: str) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.end_headers()
    handler.wfile.write(body.encode())


def fill(template: str, prompt: str) -> str:
    """Replace {snippet} with the number of the passage holding it, {!snippet} with one lacking it."""
    passages = {int(n): text for n, text in re.findall(r"^\[(\d+)\] (.*?)(?=^\[\d+\] |\nQuestion: )", prompt,
                                                        re.MULTILINE | re.DOTALL)}

    def number(match: re.Match[str]) -> str:
        negate, snippet = match.group(1) == "!", match.group(2)
        return str(next(n for n, text in passages.items() if (snippet in text) != negate))

    return re.sub(r"\{(!?)([^}]+)\}", number, template)


@pytest.fixture
def endpoint() -> Iterator[FakeEndpoint]:
    fake = FakeEndpoint()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            fake.respond(self)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_port}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def index(fake_index: Path, embedder: HashingEmbedder) -> Index:
    opened = Index.open(fake_index, embedder=embedder)
    opened.answerability = coverage_answerability()
    return opened


@pytest.fixture(autouse=True)
def no_llm_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in LLM_ENV:
        monkeypatch.delenv(name, raising=False)


def ask_llm(index: Index, endpoint: FakeEndpoint, question: str, reply: str, behaviour: str = "stream",
            **options: Any) -> Answer:
    endpoint.reply, endpoint.behaviour = reply, behaviour
    return index.ask(question, mode="llm", generator=OpenAICompatibleGenerator(endpoint.url, "fake", **options))


def file_text(seeds: Path, article_id: str) -> str:
    return (seeds / f"{article_id}.txt").read_text(encoding="utf-8")


# --- what the verifier keeps and flags ---------------------------------------------------------


def test_a_correct_answer_is_kept_with_quotes_that_slice_out_of_the_file(index: Index, endpoint: FakeEndpoint,
                                                                          seeds_copy: Path) -> None:
    answer = ask_llm(index, endpoint, SHIPS, CORRECT)

    assert (answer.mode, answer.abstained, answer.notice) == ("llm", False, None)
    assert answer.answer == "It has built nearly 140 ships and repaired over 380 military vessels. [1]"
    assert [(s.text, s.citations, s.supported) for s in answer.sentences] == [
        ("It has built nearly 140 ships and repaired over 380 military vessels.", (1,), True)]
    [citation] = answer.citations
    assert citation.article_id.startswith("004_")
    assert citation.quote.startswith("In recent years, it has produced over 140 types of weaponry, built nearly 140")
    assert file_text(seeds_copy, citation.article_id)[citation.start:citation.end] == citation.quote
    offset = citation.passage_start
    assert citation.passage[citation.start - offset:citation.end - offset] == citation.quote
    assert {"retrieval_ms", "generation_ms", "verification_ms", "answer_ms", "total_ms"} <= set(answer.timings)


@pytest.mark.parametrize(("flawed", "why"), [
    ("It has repaired over 380 military vessels [{!380 military vessels}].", "cites a passage without the fact"),
    ("It has built nearly 150 ships [{nearly 140 ships}].", "invents a number"),
    ("Lt. Gen. Nguyen Van Minh built nearly 140 ships [{nearly 140 ships}].", "invents a name"),
    ("It has built nearly 380 ships [{nearly 140 ships}].", "counts the repaired vessels as ships built"),
    ("It has produced 140 types of ships [{nearly 140 ships}].", "counts types of weaponry as types of ships"),
    ("It has built nearly 150 ships.", "cites nothing and matches no passage"),
])
def test_a_flawed_sentence_is_flagged_and_left_out_of_the_text(index: Index, endpoint: FakeEndpoint,
                                                               flawed: str, why: str) -> None:
    answer = ask_llm(index, endpoint, SHIPS, f"{CORRECT} {flawed}")

    assert answer.mode == "llm" and not answer.abstained, why
    assert [s.supported for s in answer.sentences] == [True, False], why
    assert answer.answer == "It has built nearly 140 ships and repaired over 380 military vessels. [1]"
    assert answer.notice == (f"1 of 2 sentences of fake at {endpoint.url}'s answer were not found in the articles: "
                             "they are shown apart and left out of the answer text.")
    assert all(n in {c.n for c in answer.citations} for s in answer.sentences for n in s.citations)
    assert answer.draft is not None and answer.draft.status == "partly_verified"
    [rejected] = [s for s in answer.draft.sentences if not s.supported]
    assert rejected.reason, why


@pytest.mark.parametrize("marker", ["", " [9]"])
def test_a_correct_sentence_without_a_usable_marker_is_attributed_and_cited(index: Index, endpoint: FakeEndpoint,
                                                                            marker: str) -> None:
    """Small models rarely write [n]: the sentence is matched to the passage that backs it."""
    answer = ask_llm(index, endpoint, SHIPS, f"It has built nearly 140 ships and repaired over 380 military vessels.{marker}")

    assert answer.mode == "llm" and answer.answer == "It has built nearly 140 ships and repaired over 380 military vessels. [1]"
    assert answer.citations[0].quote.startswith("In recent years, it has produced over 140 types of weaponry")
    assert answer.sentences[0].attributed and answer.draft.status == "verified"
    assert answer.notice.endswith("did not cite its sources; each sentence was matched to the passage that backs it.")


def test_an_invented_draft_without_markers_gives_no_llm_answer(index: Index, endpoint: FakeEndpoint) -> None:
    answer = ask_llm(index, endpoint, SHIPS, "The department has built 2,000 submarines since 1990. "
                                             "It sells them to Brazil.")

    assert answer.mode == "extractive" and answer.answer == index.ask(SHIPS).answer
    assert "cited no passage, and none of its sentences matches one" in answer.notice
    assert answer.draft.status == "unverified" and not any(s.supported for s in answer.draft.sentences)


def test_the_wrong_passage_stays_cited_on_the_flagged_sentence(index: Index, endpoint: FakeEndpoint) -> None:
    answer = ask_llm(index, endpoint, SHIPS, f"{CORRECT} It has repaired over 380 military vessels [{{!380}}].")

    flagged = answer.sentences[1]
    assert flagged.citations == (2,)
    assert "380" not in answer.citations[1].passage


def test_an_invented_number_alone_falls_back_to_the_extractive_answer(index: Index, endpoint: FakeEndpoint) -> None:
    answer = ask_llm(index, endpoint, SHIPS, "It has built nearly 150 ships [{nearly 140 ships}].")

    assert answer.mode == "extractive" and not answer.abstained
    assert answer.notice == ("The answer of fake at " + endpoint.url + " could not be verified: none of its "
                             "sentences is backed by the passage it cites. This is the extractive answer.")
    assert answer.draft.text == "It has built nearly 150 ships [1]." and answer.draft.status == "unverified"
    assert "does not hold 150" in answer.draft.sentences[0].reason
    assert answer.answer == index.ask(SHIPS).answer


@pytest.mark.parametrize("reply", ["It is so [1][2].", "", "[1]", "Sure! Here is what I found:"])
def test_a_reply_with_nothing_to_check_falls_back(index: Index, endpoint: FakeEndpoint, reply: str) -> None:
    answer = ask_llm(index, endpoint, SHIPS, reply)

    assert answer.mode == "extractive" and "could not be verified" in answer.notice


def test_an_answer_from_the_models_own_knowledge_is_caught(index: Index, endpoint: FakeEndpoint) -> None:
    answer = ask_llm(index, endpoint, BUDGET, "Vietnam's defence budget for 2026 is about 8 billion US dollars [1].")

    assert answer.mode == "extractive" and answer.abstained and answer.answer == NOT_ANSWERED
    assert "could not be verified" in answer.notice
    assert answer.related


def test_a_model_saying_the_passages_do_not_answer_is_an_abstention(index: Index, endpoint: FakeEndpoint) -> None:
    answer = ask_llm(index, endpoint, BUDGET, "The passages do not contain the answer.")

    assert (answer.mode, answer.abstained, answer.answer, answer.notice) == ("llm", True, NOT_ANSWERED, None)
    assert answer.citations == () and len(answer.related) == 3


def test_a_partial_answer_keeps_its_note_of_what_the_passages_lack(index: Index, endpoint: FakeEndpoint) -> None:
    answer = ask_llm(index, endpoint, SHIPS, f"{CORRECT} The passages do not say how many of the ships are warships.")

    assert [(s.supported, s.citations) for s in answer.sentences] == [(True, (1,)), (True, ())]
    assert answer.answer.endswith("[1] The passages do not say how many of the ships are warships.")
    assert answer.notice is None


@pytest.mark.parametrize(("question", "message"), [
    ("   ", "the question is empty"),
    ("x" * 2001, "the question is 2001 characters long; the limit is 2000"),
])
def test_bad_questions_are_refused_before_the_model_is_asked(index: Index, endpoint: FakeEndpoint, question: str,
                                                             message: str) -> None:
    with pytest.raises(QueryError, match=message):
        ask_llm(index, endpoint, question, CORRECT)
    assert endpoint.requests == []


@pytest.mark.parametrize("question", ["Ngân sách quốc phòng năm 2026 là bao nhiêu?", "zxq vlorp fnord?"])
def test_foreign_or_nonsense_questions_end_in_an_abstention(index: Index, endpoint: FakeEndpoint,
                                                            question: str) -> None:
    for reply in ("The passages do not contain the answer.", "The budget is 8 billion USD [1]."):
        answer = ask_llm(index, endpoint, question, reply)
        assert answer.abstained and answer.answer == NOT_ANSWERED, reply


# --- endpoint failures: the extractive answer with a notice ------------------------------------


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.mark.parametrize(("behaviour", "options", "message"), [
    ("garbage", {}, "did not answer with an OpenAI-compatible chat completion (got '<html><body>Welcome to nginx!"),
    ("error", {}, "answered HTTP 500 Internal Server Error: {\"error\": {\"message\": \"model crashed\"}}"),
    ("slow", {"timeout": 0.2}, "sent nothing for 0.2 s: check that the server is working, or allow more time "
                               "with RAG_LLM_TIMEOUT"),
])
def test_a_failing_endpoint_gives_the_extractive_answer_with_a_notice(index: Index, endpoint: FakeEndpoint,
                                                                     behaviour: str, options: dict[str, Any],
                                                                     message: str) -> None:
    answer = ask_llm(index, endpoint, SHIPS, CORRECT, behaviour, **options)

    assert answer.mode == "extractive" and answer.answer == index.ask(SHIPS).answer
    assert answer.notice.startswith("The LLM gave no usable answer (")
    assert message in answer.notice
    assert answer.notice.endswith("This is the extractive answer.")


def test_an_endpoint_that_is_down_gives_the_extractive_answer(index: Index) -> None:
    url = closed_port_url()
    answer = index.ask(SHIPS, mode="llm", generator=OpenAICompatibleGenerator(url, "fake"))

    assert answer.mode == "extractive"
    assert f"cannot reach the LLM endpoint {url}/chat/completions" in answer.notice
    assert "is the server running and is RAG_LLM_URL (--llm-url) right?" in answer.notice


@pytest.mark.parametrize(("events", "message"), [
    ('data: {"object": "chat.completion.chunk"}\n\n', "did not answer with an OpenAI-compatible chat completion"),
    ("data: {not json\n\n", "did not answer with an OpenAI-compatible chat completion (got '{not json')"),
    ('data: {"error": {"message": "out of memory"}}\n\n', "reported an error: out of memory"),
    ("", "closed the stream without answering"),
])
def test_malformed_streams_raise_a_one_line_error(endpoint: FakeEndpoint, events: str, message: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FakeEndpoint, "respond",
                        lambda self, handler: send(handler, 200, "text/event-stream", events))
    generator = OpenAICompatibleGenerator(endpoint.url, "fake")

    with pytest.raises(GeneratorError) as error:
        list(generator.stream([{"role": "user", "content": "hi"}]))
    assert message in str(error.value) and "\n" not in str(error.value)


# --- streaming and the request -----------------------------------------------------------------


def test_tokens_stream_to_the_callback_as_they_arrive(index: Index, endpoint: FakeEndpoint) -> None:
    """Word by word, but for the newest 12 words, held back until they are known not to repeat."""
    reply = f"{CORRECT} Director Ho Quang Tuan leads the general department, which also makes civilian goods."
    endpoint.reply = reply
    pieces: list[str] = []

    index.ask(SHIPS, mode="llm", generator=OpenAICompatibleGenerator(endpoint.url, "fake"), on_token=pieces.append)

    words = len(re.findall(r"\S+", "".join(pieces)))
    assert pieces[:5] == ["It ", "has ", "built ", "nearly ", "140 "]  # one event each, once 12 more arrived
    assert len(pieces) == words - 13 + 1  # the newest 12 whole words and the one still growing come out at the end
    assert re.fullmatch(r"It has built nearly 140 ships and repaired over 380 military vessels \[\d\]\. Director .*goods\.",
                        "".join(pieces))


def test_a_reply_that_loops_ends_before_the_repetition() -> None:
    looping = "The plant builds drones for the navy and the army every year. " * 5
    pieces = [word + " " for word in looping.split()]

    assert "".join(without_repetition(pieces)) == "The plant builds drones for the navy and the army every year."


def test_the_request_streams_the_numbered_passages_and_the_question(index: Index, endpoint: FakeEndpoint) -> None:
    endpoint.reply = CORRECT
    generator = OpenAICompatibleGenerator(endpoint.url + "/", "llama3.2", api_key="s3cret")

    index.ask(SHIPS, k=3, mode="llm", generator=generator)

    [request] = endpoint.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer s3cret"
    body = request["body"]
    assert (body["model"], body["stream"], body["temperature"]) == ("llama3.2", True, 0.0)
    system, user = body["messages"]
    assert system == {"role": "system", "content": SYSTEM_PROMPT}
    assert re.findall(r"^\[(\d+)\] ", user["content"], re.MULTILINE) == ["1", "2", "3"]
    for hit in index.search(SHIPS, k=3):  # each passage is headed by its title and date, as the prompt says
        date = hit.chunk.date
        assert f"{hit.chunk.title} ({f'{date.day} {date:%B %Y}' if date else 'date unknown'})" in user["content"]
    assert user["content"].endswith(f"Question: {SHIPS}")


def test_an_endpoint_that_ignores_stream_is_read_whole(index: Index, endpoint: FakeEndpoint) -> None:
    answer = ask_llm(index, endpoint, SHIPS, CORRECT, "json")

    assert answer.mode == "llm" and answer.sentences[0].supported


# --- the verifier's parts ----------------------------------------------------------------------


def test_replies_split_into_claims_with_their_markers() -> None:
    reply = ("<think>They want ships [3].</think>The department built nearly 140 ships. [1] It repaired "
             "**380** vessels [2, 3].\n- Bicycle parts [Passage 4]\n- Oil stoves [4][5]")
    assert parse_claims(reply) == [
        Claim("The department built nearly 140 ships.", (1,)),
        Claim("It repaired 380 vessels.", (2, 3)),
        Claim("Bicycle parts", (4,)),
        Claim("Oil stoves", (4, 5)),
    ]


def test_facts_are_numbers_and_names_as_matching_terms() -> None:
    assert facts("On September 15, To Lam presented 1,250 medals to two units worth 8 billion VND in 2021-2025.") == {
        "15", "lam", "1250", "2", "8", "billion", "vnd", "2021", "2025"}  # a month is not a name


def test_a_sentence_combining_two_passages_needs_both_cited(index: Index) -> None:
    hits = index.search(SHIPS)
    ships, director = (next(hit.chunk for hit in hits if snippet in hit.chunk.text)
                       for snippet in ("nearly 140 ships", "Ho Quang Tuan"))
    claim = "According to Director Lt. Gen. Ho Quang Tuan, the general department has built nearly 140 ships."

    checked = check_claims(SHIPS, [Claim(claim, cited) for cited in [(1,), (2,), (1, 2)]], [ships, director],
                           index.embedder.embed)

    assert [c.supported for c in checked] == [False, False, True]
    assert [quote.chunk for quote in checked[2].quotes] == [ships, director]


# --- configuration -----------------------------------------------------------------------------


def test_without_configuration_llm_mode_is_refused_with_the_fix(index: Index) -> None:
    assert index.llm_available is False and index.generator is None
    with pytest.raises(QueryError) as error:
        index.ask(SHIPS, mode="llm")
    assert str(error.value) == ("LLM answers are not configured: set RAG_LLM_URL and RAG_LLM_MODEL (an OpenAI-"
                                "compatible endpoint) or RAG_LLM_GGUF (a local model file), or use mode 'extractive'")
    with pytest.raises(QueryError, match="mode must be 'extractive' or 'llm', got 'poem'"):
        index.ask(SHIPS, mode="poem")  # type: ignore[arg-type]


def test_the_environment_configures_the_index(index: Index, endpoint: FakeEndpoint,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_LLM_URL", endpoint.url)
    monkeypatch.setenv("RAG_LLM_MODEL", "llama3.2")
    monkeypatch.setenv("RAG_LLM_TIMEOUT", "5")
    endpoint.reply = CORRECT

    assert index.llm_available is True
    assert isinstance(index.generator, OpenAICompatibleGenerator) and index.generator.timeout == 5.0
    assert index.ask(SHIPS, mode="llm").mode == "llm"


def test_a_misconfigured_environment_makes_llm_unavailable_and_says_why(index: Index,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("RAG_LLM_URL", "http://127.0.0.1:11434/v1")

    assert index.llm_available is False
    assert "the LLM endpoint http://127.0.0.1:11434/v1 needs a model name: set RAG_LLM_MODEL" in caplog.text
    with pytest.raises(GeneratorError, match="needs a model name"):
        index.ask(SHIPS, mode="llm")


@pytest.mark.parametrize(("environ", "error", "message"), [
    ({"RAG_LLM_TIMEOUT": "soon"}, ConfigError, "RAG_LLM_TIMEOUT must be a number of seconds, got 'soon'"),
    ({"RAG_LLM_TIMEOUT": "0"}, ConfigError, "the LLM timeout must be between 0 and 3600 seconds, got 0.0"),
    ({"RAG_LLM_URL": "localhost:11434"}, ConfigError,
     "the LLM endpoint must be an http:// or https:// URL, got 'localhost:11434'"),
    ({"RAG_LLM_URL": "http://h/v1", "RAG_LLM_MODEL": "m", "RAG_LLM_GGUF": "m.gguf"}, GeneratorError,
     "both an LLM endpoint (RAG_LLM_URL, --llm-url) and a GGUF model file (RAG_LLM_GGUF, --llm-gguf) are "
     "configured: keep one"),
])
def test_bad_settings_are_refused_with_a_message(environ: dict[str, str], error: type[Exception],
                                                 message: str) -> None:
    with pytest.raises(error) as raised:
        generator_from_env(environ)
    assert str(raised.value) == message


def test_no_settings_means_no_generator() -> None:
    assert generator_from_env({}) is None
    assert LLMSettings.from_env({"RAG_LLM_MODEL": "llama3.2"}).generator() is None


# --- the in-process GGUF backend ---------------------------------------------------------------


def gguf_file(folder: Path) -> Path:
    path = folder / "model.gguf"
    path.write_bytes(b"GGUF" + bytes(16))
    return path


def test_a_missing_gguf_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(GeneratorError) as error:
        generator_from_env({"RAG_LLM_GGUF": str(tmp_path / "none.gguf")})
    assert str(error.value) == (f"no GGUF model file at {tmp_path / 'none.gguf'}: give the path of a .gguf file you "
                                "have (RAG_LLM_GGUF or --llm-gguf); nothing is downloaded")


def test_a_file_that_is_not_gguf_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.gguf").write_text("hello")
    with pytest.raises(GeneratorError, match="notes.gguf is not a GGUF model file"):
        LlamaCppGenerator(tmp_path / "notes.gguf")


def test_a_missing_xllamacpp_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "xllamacpp", None)  # import fails as if not installed
    with pytest.raises(GeneratorError) as error:
        LlamaCppGenerator(gguf_file(tmp_path))
    assert str(error.value) == ("running a GGUF model needs the optional xllamacpp package: pip install 'rag[llm]' "
                                "(or use an OpenAI-compatible endpoint with RAG_LLM_URL)")


def fake_xllamacpp(chunks: list[Any]) -> types.ModuleType:
    """A stand-in for the binding: Server(params).handle_chat_completions(request, callback)."""
    module = types.ModuleType("xllamacpp")

    class CommonParams:
        def __init__(self) -> None:
            self.model = types.SimpleNamespace(path="")
            self.cpuparams = types.SimpleNamespace(n_threads=0)
            self.cpuparams_batch = types.SimpleNamespace(n_threads=0)

    class Server:
        requests: list[dict[str, Any]] = []

        def __init__(self, params: CommonParams) -> None:
            self.params = params

        def handle_chat_completions(self, request: dict[str, Any], callback: Any = None) -> Any:
            if callback is None:  # the warm-up: a whole completion
                return {"choices": [{"message": {"content": "hi"}}]}
            Server.requests.append(request)
            for chunk in chunks:
                if callback(chunk):
                    return None
            return None

    module.CommonParams = CommonParams  # type: ignore[attr-defined]
    module.Server = Server  # type: ignore[attr-defined]
    return module


def test_the_gguf_backend_streams_the_bindings_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chunks = [[{"choices": [{"delta": {"role": "assistant"}}]}, {"choices": [{"delta": {"content": "Nearly "}}]}],
              {"choices": [{"delta": {"content": "140 ships."}}]}]
    module = fake_xllamacpp(chunks)
    monkeypatch.setitem(sys.modules, "xllamacpp", module)
    generator = LlamaCppGenerator(gguf_file(tmp_path), threads=2)

    assert "".join(generator.stream([{"role": "user", "content": "How many?"}])) == "Nearly 140 ships."
    [request] = module.Server.requests
    assert request["stream"] is True and request["messages"] == [{"role": "user", "content": "How many?"}]
    assert request["max_tokens"] == 200 and request["return_progress"] is True


def test_the_gguf_backend_reports_the_bindings_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "xllamacpp", fake_xllamacpp([{"code": 500, "message": "context overflow"}]))
    generator = LlamaCppGenerator(gguf_file(tmp_path))

    with pytest.raises(GeneratorError, match="the LLM model model.gguf reported an error: context overflow"):
        list(generator.stream([{"role": "user", "content": "How many?"}]))


# --- the command line --------------------------------------------------------------------------


@pytest.fixture
def cli_index(tmp_path: Path, seeds_copy: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    index_dir = str(tmp_path / "cli-index")
    assert invoke_cli(["index", "--seeds", str(seeds_copy), "--index", index_dir]).exit_code == 0
    return index_dir


def test_cli_streams_the_reply_then_prints_the_verified_answer(cli_index: str, endpoint: FakeEndpoint) -> None:
    endpoint.reply = f"{CORRECT} It has built nearly 150 ships [{{nearly 140 ships}}]."
    result = invoke_cli(["ask", SHIPS, "--index", cli_index, "--mode", "llm",
                                       "--llm-url", endpoint.url, "--llm-model", "fake"])

    assert result.exit_code == 0, result.output
    streamed, verified = result.output.split("\n\n--- verified answer ---\n")
    assert re.fullmatch(r"--- draft, being checked against the articles ---\n"
                        r"It has built nearly 140 ships and repaired over 380 military vessels \[\d\]\. "
                        r"It has built nearly 150 ships \[\d\]\.", streamed)
    assert verified.startswith("It has built nearly 140 ships and repaired over 380 military vessels. [1]\n\n"
                               "Not found in the articles (left out of the answer):\n"
                               "- It has built nearly 150 ships. (the passage does not hold 150)\n\nnote: 1 of 2 sentences")
    assert "\nSources:\n[1] " in verified


def test_cli_json_prints_only_the_final_record(cli_index: str, endpoint: FakeEndpoint,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_LLM_URL", endpoint.url)
    monkeypatch.setenv("RAG_LLM_MODEL", "fake")
    endpoint.reply = CORRECT
    result = invoke_cli(["ask", SHIPS, "--index", cli_index, "--mode", "llm", "--json"])

    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert (record["mode"], record["abstained"], record["sentences"][0]["supported"]) == ("llm", False, True)
    assert record["draft"]["text"].startswith("It has built nearly 140 ships") and record["draft"]["status"] == "verified"
    assert {"question", "answer", "abstained", "mode", "citations", "related", "timings"} <= set(record)


def test_cli_falls_back_with_a_note_when_the_endpoint_is_down(cli_index: str) -> None:
    result = invoke_cli(["ask", SHIPS, "--index", cli_index, "--mode", "llm",
                                       "--llm-url", closed_port_url(), "--llm-model", "fake"])

    assert result.exit_code == 0 and "Traceback" not in result.output
    assert result.output.startswith("note: The LLM gave no usable answer (cannot reach the LLM endpoint")


@pytest.mark.parametrize(("args", "status", "message"), [
    (["--llm-url", "http://127.0.0.1:1/v1"], 2, "--llm-url is for --mode llm"),
    (["--mode", "llm", "--llm-url", "http://h/v1", "--llm-gguf", "m.gguf"], 2,
     "give --llm-url or --llm-gguf, not both"),
    (["--mode", "llm"], 1, "error: --mode llm needs a model: give --llm-url and --llm-model"),
    (["--mode", "llm", "--llm-gguf", "missing.gguf"], 1, "error: no GGUF model file at missing.gguf"),
])
def test_cli_refuses_llm_options_that_cannot_work(cli_index: str, args: list[str], status: int,
                                                  message: str) -> None:
    result = invoke_cli(["ask", SHIPS, "--index", cli_index, *args])

    assert result.exit_code == status
    assert message in result.output


# --- the calibration of the support check, with the real model ---------------------------------

@pytest.mark.model
def test_the_check_on_the_held_out_claims(tmp_path: Path, real_embedder: Any) -> None:
    """The labelled claims of the held-out split (never tuned on), checked without markers
    against retrieved passages: flags at the measured level (scripts/eval_claims.py,
    bench/results/claims.log: precision 0.926, recall 0.806)."""
    build_index([SEEDS, DATA / "eval_articles"], tmp_path / "index", embedder=real_embedder)
    index = Index.open(tmp_path / "index", embedder=real_embedder)
    claims = load_claims(DATA / "claims.jsonl", "heldout")

    figures = unsupported_scores(claims, ClaimChecker(index).check(claims, VerifierSettings()))

    assert figures["precision"] >= 0.9 and figures["recall"] >= 0.78, figures


def test_a_claim_that_swaps_who_did_what_to_whom_is_flagged(index: Index) -> None:
    [passage] = [hit.chunk for hit in index.search("PM Chính asked the Ministry of National Defence", k=10)
                 if "PM Chính asked the Ministry of National Defence" in hit.chunk.text][:1]
    swapped = "The Ministry of National Defence asked PM Chính to continue implementing the Party's policies."
    faithful = "PM Chính asked the Ministry of National Defence to continue implementing the Party's policies."

    flagged, kept = check_claims("", [Claim(swapped, (1,)), Claim(faithful, (1,))], [passage], index.embedder.embed)

    assert not flagged.supported and flagged.reason.endswith("not the other way round")
    assert "other way round" not in kept.reason
