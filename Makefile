# Two entry points for a fresh clone: `make serve` and `make test`. Both set up .venv first.
# torch is installed pinned before the package: an unpinned torch pulls a multi-GB CUDA build.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: setup browser serve index test test-fast bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The browser tests drive Debian's Chromium (Playwright's own browser download is not used).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }

serve: setup
	$(BIN)/rag serve

index: setup
	$(BIN)/rag index

test: setup browser
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not model and not browser"

# The speed suite and the side-by-side with LlamaIndex and LangChain (their own venv); see
# docs/performance.md. About an hour on 2 cores, most of it encoding SciFact three times.
SCIFACT ?= ../shared/eval/scifact
bench: setup
	$(BIN)/python bench/encoders.py $(SCIFACT) --variant onnx-int8:sentences --json bench/results/encoders-onnx-int8-sentences.json
	$(BIN)/python bench/suite.py --scifact $(SCIFACT)
	$(BIN)/rag eval --beir $(SCIFACT) --json > bench/results/eval-scifact.json
	$(BIN)/python bench/lexical.py $(SCIFACT) --chunks 100000
	bash bench/frameworks/setup.sh
	for framework in llamaindex langchain; do \
	  bench/frameworks/.venv/bin/python bench/frameworks/run.py --framework $$framework --scifact $(SCIFACT) \
	    --docs 0 --queries 300 --json bench/results/frameworks/$$framework.json || exit 1; done
	$(BIN)/python bench/compare.py

clean:
	rm -rf $(VENV) index
