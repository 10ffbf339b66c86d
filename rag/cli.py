"""The `rag` command: a thin shell over the public API.

User errors exit 1 with one line on stderr; usage errors exit 2 (click's convention). What
comes from articles, file names or a model is printed without control characters.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from rag.answer.generators import Generator, LLMSettings
from rag.answer.schema import Answer, AnswerMode
from rag.config import Config, configure_process
from rag.encoders.base import Embedder
from rag.encoders.minilm import default_embedder
from rag.errors import GeneratorError, QueryError, RagError
from rag.index import Index
from rag.ingest.plan import UpdateReport
from rag.ingest.update import DEFAULT_INDEX_DIR, build_index
from rag.storage.milvus import is_milvus_uri


class _Store(click.ParamType):
    """An index folder (a Path), or a Milvus store kept as given: `milvus-lite:PATH` or
    `http(s)://host:19530` (rag.storage.milvus)."""

    name = "store"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path | str:
        if isinstance(value, Path) or not is_milvus_uri(str(value)):
            path = Path(value)
            if path.exists() and not path.is_dir():
                self.fail(f"{value} is a file; the index is a folder (or a Milvus store such as "
                          "milvus-lite:/tmp/rag.db)", param, ctx)
            return path
        return str(value)


index_option = click.option(
    "--index", "--store", "index_dir", type=_Store(), default=DEFAULT_INDEX_DIR, envvar=["RAG_STORE", "RAG_INDEX"],
    show_default=True, show_envvar=True,
    help="Where the index is: a folder, milvus-lite:PATH, or a Milvus cluster's http(s)://host:19530 "
         "(RAG_MILVUS_TOKEN authenticates).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
max_file_option = click.option("--max-file-mb", type=click.FloatRange(min=0.001), default=5.0, show_default=True,
                               help="Refuse article files larger than this.")

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 but tab and newline, DEL, C1
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_UNESCAPED_IN_JSON = re.compile(r"[\x7f-\x9f\ud800-\udfff]")  # json.dumps escapes only C0


class _Command(click.Command):
    """A command whose RagError is one line on stderr, or under --json the record
    {"error": message} on stdout (a script reads JSON either way), and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RagError as error:
            if ctx.params.get("as_json"):
                _print_json({"error": str(error)})
            else:
                _echo(f"error: {error}", err=True)
            sys.exit(1)


class _Group(click.Group):
    """Turns every RagError, here or in a command, into one line and exit status 1."""

    command_class = _Command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RagError as error:
            _echo(f"error: {error}", err=True)
            sys.exit(1)


@click.group(cls=_Group)
@click.option("-v", "--verbose", is_flag=True, help="Log what the library does.")
def main(verbose: bool) -> None:
    """Ask questions about a folder of news articles; answers cite their sources.

    \b
    Start with:
      rag index                 # read seeds/ into index/
      rag search "ships built by the defence industry"
      rag ask "Who directs the General Department of Defence Industry?"
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    configure_process()


def _optional(module: str, extra: str, feature: str) -> Any:
    """A module that needs an optional extra, or one line saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        raise RagError(f"{feature} needs the package {error.name!r}, which is not installed: "
                       f"pip install -e '.[{extra}]' (make setup installs it)") from error


def _embedder() -> Embedder:
    """The encoder of this command: the one passed in `obj={"embedder": ...}` (tests, or a
    program embedding the CLI), else the packaged model, made once per command."""
    context = click.get_current_context().find_root()
    context.ensure_object(dict)
    if "embedder" not in context.obj:
        context.obj["embedder"] = default_embedder()
    return context.obj["embedder"]


@main.command("index")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--seeds", type=click.Path(path_type=Path), default=Path("seeds"), show_default=True,
              help="Folder of articles, used when no PATHS are given.")
@index_option
@click.option("--rebuild", is_flag=True, help="Start from scratch instead of updating.")
@click.option("--follow-links", is_flag=True, help="Also read symbolic links that point out of the folder.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Encode on a Ray cluster at ADDRESS (e.g. ray://head:10001), or on a local Ray when no "
                   "address is given; needs pip install 'rag[ray]'.")
@max_file_option
@json_option
def index_command(paths: tuple[Path, ...], seeds: Path, index_dir: Path | str, rebuild: bool, follow_links: bool,
                  ray_address: str | None, max_file_mb: float, as_json: bool) -> None:
    """Build or update the index from article files (.txt, .md) and folders.

    New articles are added, changed ones re-embedded, deleted ones removed; unchanged
    articles are left alone. Bad files are reported and skipped, and the exit status is 1.

    \b
    Examples:
      rag index                         # seeds/ -> index/
      rag index news/ extra.md --index /tmp/index
      rag index --rebuild
      rag index --ray                   # encode on a local Ray; --ray ray://head:10001 for a cluster
    """
    config = Config(max_file_bytes=int(max_file_mb * 1_000_000))
    embedder = _embedder()
    with contextlib.ExitStack() as stack:
        encode_batches = None
        if ray_address is not None:
            from rag.ingest.ray_encode import RayEncoder

            if ray_address != "local" and not re.fullmatch(r"[a-z]+://\S+|[\w.-]+:\d+", ray_address):
                raise click.UsageError(f"--ray took {ray_address!r} as a cluster address; give one such as "
                                       "ray://head:10001, or put --ray after the folders for a local Ray")
            encode_batches = stack.enter_context(RayEncoder(None if ray_address == "local" else ray_address,
                                                            backend=embedder.describe().get("backend")))
        report = build_index(list(paths) or [seeds], index_dir, embedder=embedder, config=config, rebuild=rebuild,
                             follow_links=follow_links, progress=None if as_json else _progress_bar("embedding"),
                             encode_batches=encode_batches)
    _print_report(report, as_json)
    if report.failed:
        sys.exit(1)


def filter_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--since, --until, --article and --include-undated, shared by search and ask."""
    date = click.DateTime(formats=["%Y-%m-%d"])
    options = [
        click.option("--since", type=date, help="Only articles dated on or after this day (YYYY-MM-DD)."),
        click.option("--until", type=date, help="Only articles dated on or before this day (YYYY-MM-DD)."),
        click.option("--article", "articles", multiple=True, help="Only this article id (repeatable)."),
        click.option("--include-undated", is_flag=True,
                     help="With --since/--until, also search articles whose date is unknown."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _filters(index: Index, since: Any, until: Any, articles: tuple[str, ...], include_undated: bool,
             announce: bool) -> dict[str, Any]:
    """The filter keywords for Index.search/ask; with `announce`, tells the user when undated
    articles are left out (an answer says so itself)."""
    date_from, date_to = (since.date() if since else None), (until.date() if until else None)
    undated = index.undated_articles() if (date_from or date_to) and not include_undated and announce else []
    if undated:
        _echo(f"note: {len(undated)} article(s) of unknown date ({', '.join(undated)}) are not searched "
              "under a date filter; add --include-undated to search them", err=True)
    return {"date_from": date_from, "date_to": date_to, "articles": list(articles) or None,
            "include_undated": include_undated}


@main.command()
@click.argument("query")
@click.option("-k", type=click.IntRange(1, 1000), default=5, show_default=True, help="Passages to return.")
@filter_options
@index_option
@json_option
def search(query: str, k: int, since: Any, until: Any, articles: tuple[str, ...], include_undated: bool,
           index_dir: Path | str, as_json: bool) -> None:
    """Rank passages by meaning and by words (BM25 fused with dense retrieval).

    The score in brackets is the fused score: how far a passage stands above the typical
    candidate of this query, in robust standard deviations, BM25's and the vectors' weighted
    together. Higher is better; it compares passages of one query, not scores across queries.

    \b
    Examples:
      rag search "How many ships has the defence industry built?"
      rag search "Hoa Lac meeting" -k 10 --json
      rag search "defense industry 80th anniversary" --since 2025-01-01 --include-undated
    """
    index = Index.open(index_dir, embedder=_embedder())
    hits = index.search(query, k=k, **_filters(index, since, until, articles, include_undated, not as_json))
    corrections = index.corrections(query)
    if as_json:
        _print_json({"query": query, "corrections": {typed: list(read_as) for typed, read_as in corrections.items()},
                     "hits": [hit.to_json() for hit in hits]})
        return
    _print_corrections(corrections)
    if not hits:
        _echo("No passage matches.")
    for hit in hits:
        chunk = hit.chunk
        _echo(f"{hit.rank}. [{hit.score:.3f}] {chunk.title} ({_date(chunk.date)}) "
              f"{chunk.article_id} [{chunk.start}:{chunk.end}]")
        for other in hit.corroborating:
            _echo(f"   also reported by {other.article_id} ({other.title}) [{other.start}:{other.end}]")
        _echo(f"   {_one_line(chunk.text)}\n")


@main.command()
@click.argument("question")
@click.option("-k", type=click.IntRange(1, 50), help="Passages to draw from [default: 8].")
@click.option("--mode", type=click.Choice(["extractive", "llm"]), default="extractive", show_default=True,
              help="extractive: sentences quoted from the articles; llm: written by a model, then checked "
                   "sentence by sentence against the passages it cites.")
@click.option("--llm-url", help="OpenAI-compatible endpoint for --mode llm, e.g. http://127.0.0.1:11434/v1 "
                                "[default: $RAG_LLM_URL]")
@click.option("--llm-model", help="Model name the endpoint serves, e.g. llama3.2 [default: $RAG_LLM_MODEL]")
@click.option("--llm-gguf", type=click.Path(dir_okay=False, path_type=Path),
              help="Local GGUF model file run in-process; needs pip install 'rag[llm]' [default: $RAG_LLM_GGUF]")
@click.option("--llm-threads", type=click.IntRange(1, 256),
              help="Threads for the local GGUF model [default: $RAG_LLM_THREADS, else llama.cpp's choice]")
@click.option("--after", "earlier", type=click.Path(dir_okay=False, path_type=Path), multiple=True,
              help="An earlier answer of the conversation, as `rag ask --json` wrote it (repeatable, oldest first): "
                   "a follow-up is searched with the topic it continues.")
@filter_options
@index_option
@json_option
def ask(question: str, k: int | None, mode: AnswerMode, llm_url: str | None, llm_model: str | None, llm_gguf: Path | None,
        llm_threads: int | None, earlier: tuple[Path, ...], since: Any, until: Any, articles: tuple[str, ...],
        include_undated: bool, index_dir: Path | str, as_json: bool) -> None:
    """Answer from the articles: verbatim sentences, each cited, or a plain "not in the articles".

    With --mode llm a model writes the answer (printed as it arrives), then every sentence is
    checked against the passage it cites; the verified answer follows. If the model fails or
    nothing it says can be verified, the extractive answer is given with a note.

    \b
    Examples:
      rag ask "What title did To Lam present to the General Department of Defence Industry?"
      rag ask "What is Vietnam's defence budget for 2026?" --json
      rag ask "How many ships has the defence industry built?" --mode llm \\
          --llm-url http://127.0.0.1:11434/v1 --llm-model llama3.2
      rag ask "Who chaired the meeting at Hoa Lac?" --json > first.json
      rag ask "Who else attended it?" --after first.json
    """
    generator = _llm_generator(mode, llm_url, llm_model, llm_gguf, llm_threads)
    history = [_earlier_answer(path) for path in earlier]
    index = Index.open(index_dir, embedder=_embedder())
    streamed: list[str] = []

    def show(token: str) -> None:
        if not streamed:  # what streams is the model's draft, checked only once it is complete
            _echo("--- draft, being checked against the articles ---")
        streamed.append(token)
        _echo(token, nl=False)

    answer = index.ask(question, k=k, mode=mode, generator=generator, on_token=None if as_json else show,
                       history=history, **_filters(index, since, until, articles, include_undated, announce=False))
    if as_json:
        _print_json(answer.to_json())
        return
    if streamed:
        _echo(f"\n\n--- {'verified answer' if answer.mode == 'llm' else 'answer (the draft could not be verified)'} ---")
    _print_corrections(answer.corrections)
    # An extractive note (a hedge, a language) says how to read the answer: it comes first; an
    # LLM note is about the flagged sentences listed after the answer: it follows them.
    if answer.notice and answer.mode == "extractive":
        _echo(f"note: {answer.notice}\n")
    _echo(answer.answer)
    _print_unsupported(answer)
    if answer.notice and answer.mode == "llm":
        _echo(f"\nnote: {answer.notice}")
    if answer.citations:
        _echo("\nSources:")
        for citation in answer.citations:
            _echo(f"[{citation.n}] {citation.title} ({_date(citation.date)}), {citation.article_id} "
                  f"[{citation.start}:{citation.end}]")
    if answer.related:
        _echo("\nRelated passages (not an answer):")
        for passage in answer.related:
            _echo(f"- {passage.title} ({_date(passage.date)}), {passage.article_id} "
                  f"[{passage.start}:{passage.end}]: {_one_line(passage.snippet)}")


@main.command()
@index_option
@json_option
def check(index_dir: Path | str, as_json: bool) -> None:
    """Verify the index in full: every file hashed against the manifest, and its parts agreeing.

    Opening an index checks file sizes always and hashes only while it is small; this reads
    everything. Exit status 1 when a problem is found, with one line per problem.
    """
    from rag.storage.milvus import verify_milvus
    from rag.storage.snapshot import verify_index

    problems = verify_milvus(str(index_dir)) if is_milvus_uri(index_dir) else verify_index(index_dir)
    if as_json:
        _print_json({"index": str(index_dir), "problems": problems})
    else:
        for problem in problems:
            _echo(f"error: {problem}", err=True)
        if not problems:
            _echo(f"{index_dir}: sound")
    if problems:
        sys.exit(1)


@main.command()
@index_option
@click.option("--to", "target", type=_Store(), required=True,
              help="Where to copy the index: a folder, or a Milvus store (milvus-lite:PATH, http(s)://host:19530).")
@click.option("--replace", is_flag=True, help="Overwrite an index already at --to.")
@json_option
def export(index_dir: Path | str, target: Path | str, replace: bool, as_json: bool) -> None:
    """Copy the index to the other kind of store, vectors included (nothing is encoded again).

    \b
    Examples:
      rag export --store index --to milvus-lite:/tmp/rag.db
      rag export --store http://milvus:19530 --to /tmp/index
    """
    from rag.ingest.export import export_index

    report = export_index(index_dir, target, replace=replace)
    if as_json:
        _print_json({"from": str(index_dir), "to": str(target), "articles": report.articles, "chunks": report.chunks,
                     "sentences": report.sentences})
    else:
        _echo(f"{index_dir} -> {target}: {report.summary()}")


@main.command()
@index_option
@json_option
def info(index_dir: Path | str, as_json: bool) -> None:
    """Show what the index holds: articles, model, counts, last update.

    \b
    Examples:
      rag info
      rag info --index /tmp/index --json
    """
    details = Index.open(index_dir, embedder=_embedder()).info()
    if as_json:
        _print_json(details)
        return
    _echo(f"index {details['index']}: {details['counts']['articles']} articles, "
          f"{details['counts']['chunks']} chunks, model {details['model']} ({details['dim']} dims), "
          f"updated {details['updated_at']}")
    for article in details["articles"]:
        _echo(f"  {article['id']}  {article['date'] or 'date unknown':>12}  "
              f"{article['chunks']:>3} chunks  {article['title']}")


@main.command("eval")
@click.option("--qa", "qa_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Question set, one JSON object a line (id, question, answers, sources, answerable).")
@click.option("--articles", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="With --qa: article files or folders to answer from, indexed into .cache/qa/ "
                   "(repeatable); without it the --index is used.")
@click.option("--beir", "beir_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Dataset folder in BEIR format (corpus, queries.jsonl, qrels/).")
@click.option("--split", help="With --qa: tune, heldout or all [default: all]; with --beir: the qrels split "
                              "[default: train].")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=Path(".cache/beir"),
              show_default=True, envvar="RAG_CACHE", help="Where --beir keeps the indexes it builds.")
@index_option
@json_option
def eval_command(qa_file: Path | None, articles: tuple[Path, ...], beir_dir: Path | None, split: str | None,
                 cache: Path, index_dir: Path | str, as_json: bool) -> None:
    """Measure retrieval for BM25, dense and hybrid search side by side, and the answers.

    With --qa: recall@1/3/5 and MRR of the source articles on a question set, and how `rag
    ask` answers it, overall and per kind of question and lexical-overlap bucket. With --beir:
    nDCG@10, Recall@100, MRR@10 and query latency on a BEIR dataset; its index is built once
    into --cache and reused.

    \b
    Examples:
      rag eval --qa tests/data/qa_set.jsonl --articles seeds --articles tests/data/eval_articles --split heldout
      rag eval --qa tests/data/seeds_dev.jsonl
      rag eval --beir tests/data/scifact_slice --split train --json
    """
    if (qa_file is None) == (beir_dir is None):
        raise click.UsageError("give exactly one of --qa FILE or --beir DIR")
    if beir_dir is not None:
        evaluate_beir = _optional("rag.eval.beir", "eval", "BEIR scoring").evaluate_beir

        results = evaluate_beir(beir_dir, split or "train", cache, _embedder(),
                                progress=None if as_json else _progress_bar("embedding corpus"))
        columns = ["ndcg@10", "recall@100", "mrr@10", "p50_ms", "p95_ms"]
        header = f"{results['dataset']} ({results['split']}, {results['queries']} queries)"
    else:
        from rag.eval.questions import evaluate_qa_runs, load_questions, qa_index

        questions = load_questions(qa_file, split or "all")
        index = qa_index(list(articles), _embedder()) if articles else Index.open(index_dir, embedder=_embedder())
        results = evaluate_qa_runs(index, questions)
        columns = ["recall@1", "recall@3", "recall@5", "mrr"]
        header = f"{qa_file}, split {split or 'all'} ({len(questions)} questions, {results['questions']} with sources)"
    if as_json:
        _print_json(results)
        return
    _echo(header)
    _echo(f"  {'run':<8}" + "".join(f"{name:>12}" for name in columns))
    for run, metrics in results["runs"].items():
        _echo(f"  {run:<8}" + "".join(f"{metrics[name]:>12.3f}" for name in columns))
    if "answers" in results:
        _print_answer_figures(results["answers"])


def _print_answer_figures(answers: dict[str, Any]) -> None:
    names = ["answerable", "unanswerable", "gold_in_answer", "answerable_not_found", "answerable_hedged",
             "unanswerable_not_found", "unanswerable_answered"]
    short = ["ans", "unans", "gold", "ans:nf", "ans:hedge", "unans:nf", "unans:ans"]
    _echo("answers (rag ask, extractive):")
    _echo(f"  {'group':<28}" + "".join(f"{name:>10}" for name in short))
    for group, figures in [("all", answers), *answers["groups"].items()]:
        cells = [figures[name] for name in names]
        _echo(f"  {group:<28}" + "".join(f"{'-' if v is None else v if isinstance(v, int) else f'{v:.3f}':>10}"
                                          for v in cells))
    typo = answers.get("typo_vs_original")
    if typo:
        _echo(f"  typo variants: gold {typo['typo_gold_in_answer']:.3f} vs their originals "
              f"{typo['original_gold_in_answer']:.3f} ({typo['pairs']} pairs)")
    for failure in answers["failures"]:
        _echo(f"  {failure}")


@main.command()
@index_option
@click.option("--seeds", type=click.Path(path_type=Path), default=Path("seeds"), show_default=True,
              help="Folder of articles the index is built from.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True)
@click.option("--insecure", is_flag=True,
              help="Allow a non-loopback --host without a login (RAG_UI_USER / RAG_UI_PASSWORD).")
@max_file_option
def serve(index_dir: Path | str, seeds: Path, host: str, port: int, insecure: bool, max_file_mb: float) -> None:
    """Build the index if it is missing or stale, then serve the web page.

    Uploaded articles are saved into --seeds and indexed incrementally. Off 127.0.0.1 the
    page asks for the login in RAG_UI_USER and RAG_UI_PASSWORD, unless --insecure.

    \b
    Examples:
      rag serve --port 8080
      RAG_UI_USER=me RAG_UI_PASSWORD=secret rag serve --host 0.0.0.0
    """
    app = _optional("ui.app", "ui", "the web page")
    login_for, serve_app = app.login_for, app.serve

    login_for(host, insecure, os.environ)  # refuse an open address before the (maybe long) build
    embedder = _embedder()  # one model in memory, for the build and for serving
    config = Config(max_file_bytes=int(max_file_mb * 1_000_000))
    report = build_index([seeds], index_dir, embedder=embedder, config=config, progress=_progress_bar("embedding"))
    if report.changed:
        _echo(f"index updated: {report.summary()}")
    for message in report.failed:
        _echo(f"warning: {message}", err=True)
    serve_app(Index.open(index_dir, embedder=embedder, config=config), seeds_dir=seeds, host=host, port=port,
              insecure=insecure)


def _llm_generator(mode: str, url: str | None, model: str | None, gguf: Path | None,
                   threads: int | None) -> Generator | None:
    """The generator for --mode llm: the --llm-* flags over the RAG_LLM_* environment variables."""
    given = [flag for flag, value in (("--llm-url", url), ("--llm-model", model), ("--llm-gguf", gguf),
                                      ("--llm-threads", threads)) if value]
    if mode != "llm":
        if given:
            raise click.UsageError(f"{given[0]} is for --mode llm")
        return None
    if url and gguf:
        raise click.UsageError("give --llm-url or --llm-gguf, not both")
    settings = LLMSettings.from_env()
    if url:
        settings = replace(settings, url=url, gguf=None)
    if gguf:
        settings = replace(settings, gguf=gguf, url=None)
    if model:
        settings = replace(settings, model=model)
    if threads:
        settings = replace(settings, threads=threads)
    generator = settings.generator()
    if generator is None:
        raise GeneratorError("--mode llm needs a model: give --llm-url and --llm-model (an OpenAI-compatible "
                             "endpoint such as Ollama) or --llm-gguf (a local model file), or set RAG_LLM_URL and "
                             "RAG_LLM_MODEL, or RAG_LLM_GGUF")
    return generator


def _print_corrections(corrections: dict[str, tuple[str, ...]]) -> None:
    """Say which typed words were read as others, so the reader sees what was searched."""
    if corrections:
        _echo("searched for " + ", ".join(f"{' or '.join(read_as)} (for '{typed}')"
                                           for typed, read_as in corrections.items()) + "\n")


def _print_unsupported(answer: Answer) -> None:
    """The draft's sentences the check rejected, each with why: shown apart, never as the answer."""
    rejected = [sentence for sentence in answer.draft.sentences if not sentence.supported] if answer.draft else []
    if rejected:
        _echo("\nNot found in the articles (left out of the answer):")
        for sentence in rejected:
            _echo(f"- {sentence.text} ({sentence.reason})" if sentence.reason else f"- {sentence.text}")


def _print_report(report: UpdateReport, as_json: bool) -> None:
    if as_json:
        _print_json(report.to_json())
        return
    for message in report.skipped:
        _echo(message, err=True)
    for message in report.failed:
        _echo(f"error: {message}", err=True)
    _echo(report.summary())


def _progress_bar(label: str) -> Callable[[int, int], None]:
    from tqdm import tqdm

    bar: dict[str, tqdm] = {}

    def update(done: int, total: int) -> None:
        if total == 0:
            return
        if "bar" not in bar:
            bar["bar"] = tqdm(total=total, desc=label, unit="text", file=sys.stderr, leave=False)
        bar["bar"].update(done - bar["bar"].n)
        if done >= total:
            bar["bar"].close()

    return update


def _echo(text: str = "", err: bool = False, nl: bool = True) -> None:
    """click.echo, safe for a terminal whatever the text holds: control characters are dropped
    (an ESC in a title would start a sequence that recolours, retitles or clears the terminal)
    and lone surrogates, which cannot be written, become U+FFFD. The index keeps the text as read."""
    click.echo(_SURROGATE.sub("\ufffd", _CONTROL.sub("", text)), err=err, nl=nl)


def _earlier_answer(path: Path) -> dict[str, Any]:
    """An answer `rag ask --json` wrote, read back as a turn of the conversation."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise QueryError(f"{path} is not an answer `rag ask --json` wrote ({error})") from error
    if not (isinstance(record, dict) and isinstance(record.get("question"), str)
            and isinstance(record.get("answer"), str)):
        raise QueryError(f"{path} is not an answer `rag ask --json` wrote (no question and answer in it)")
    return record


def _print_json(payload: Any) -> None:
    """JSON with the characters a terminal would act on or cannot write escaped: same data."""
    text = json.dumps(payload, ensure_ascii=False, indent=2)
    click.echo(_UNESCAPED_IN_JSON.sub(lambda match: f"\\u{ord(match.group()):04x}", text))


def _date(date: Any) -> str:
    return date.isoformat() if date else "date unknown"


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":
    main()
