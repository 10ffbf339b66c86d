"""The `rag` command: a thin shell over the public API.

User errors exit 1 with one line on stderr; usage errors exit 2 (click's convention).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from rag.config import Config
from rag.errors import RagError
from rag.index import DEFAULT_INDEX_DIR, Index, UpdateReport, build_index

os.environ.setdefault("HF_HUB_OFFLINE", "1")

index_option = click.option(
    "--index", "index_dir", type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_INDEX_DIR, envvar="RAG_INDEX", show_default=True, show_envvar=True,
    help="Index directory.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


class _Group(click.Group):
    """Turns every RagError into one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RagError as error:
            click.echo(f"error: {error}", err=True)
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


@main.command("index")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--seeds", type=click.Path(path_type=Path), default=Path("seeds"), show_default=True,
              help="Folder of articles, used when no PATHS are given.")
@index_option
@click.option("--rebuild", is_flag=True, help="Start from scratch instead of updating.")
@click.option("--max-file-mb", type=click.FloatRange(min=0.001), default=5.0, show_default=True,
              help="Refuse article files larger than this.")
@json_option
def index_command(paths: tuple[Path, ...], seeds: Path, index_dir: Path, rebuild: bool,
                  max_file_mb: float, as_json: bool) -> None:
    """Build or update the index from article files (.txt, .md) and folders.

    New articles are added, changed ones re-embedded, deleted ones removed; unchanged
    articles are left alone. Bad files are reported and skipped, and the exit status is 1.

    \b
    Examples:
      rag index                         # seeds/ -> index/
      rag index news/ extra.md --index /tmp/index
      rag index --rebuild
    """
    config = Config(max_file_bytes=int(max_file_mb * 1_000_000))
    report = build_index(list(paths) or [seeds], index_dir, config=config, rebuild=rebuild,
                         progress=None if as_json else _progress_bar("embedding"))
    _print_report(report, as_json)
    if report.failed:
        sys.exit(1)


@main.command()
@click.argument("query")
@click.option("-k", type=click.IntRange(1, 1000), default=5, show_default=True, help="Passages to return.")
@index_option
@json_option
def search(query: str, k: int, index_dir: Path, as_json: bool) -> None:
    """Rank passages by meaning.

    \b
    Examples:
      rag search "How many ships has the defence industry built?"
      rag search "Hoa Lac meeting" -k 10 --json
    """
    hits = Index.open(index_dir).search(query, k=k)
    if as_json:
        _print_json({"query": query, "hits": [hit.to_json() for hit in hits]})
        return
    if not hits:
        click.echo("The index holds no passages.")
    for hit in hits:
        chunk = hit.chunk
        click.echo(f"{hit.rank}. [{hit.score:.3f}] {chunk.title} ({_date(chunk.date)}) "
                   f"{chunk.article_id} [{chunk.start}:{chunk.end}]")
        click.echo(f"   {_one_line(chunk.text)}\n")


@main.command()
@click.argument("question")
@click.option("-k", type=click.IntRange(1, 50), default=5, show_default=True, help="Passages to cite.")
@index_option
@json_option
def ask(question: str, k: int, index_dir: Path, as_json: bool) -> None:
    """Answer a question from the articles, citing the passages used.

    \b
    Example:
      rag ask "What title did To Lam present to the General Department of Defence Industry?"
    """
    hits = Index.open(index_dir).search(question, k=k)
    if as_json:
        _print_json({"question": question, "citations": [
            {"n": hit.rank, **hit.to_json()} for hit in hits]})
        return
    click.echo(f"Passages for: {question}\n")
    for hit in hits:
        click.echo(f"[{hit.rank}] {_one_line(hit.chunk.text)}")
    click.echo("\nSources:")
    for hit in hits:
        chunk = hit.chunk
        click.echo(f"[{hit.rank}] {chunk.title} ({_date(chunk.date)}), {chunk.article_id} "
                   f"[{chunk.start}:{chunk.end}]")


@main.command()
@index_option
@json_option
def info(index_dir: Path, as_json: bool) -> None:
    """Show what the index holds: articles, model, counts, last update."""
    details = Index.open(index_dir).info()
    if as_json:
        _print_json(details)
        return
    click.echo(f"index {details['index']}: {details['counts']['articles']} articles, "
               f"{details['counts']['chunks']} chunks, model {details['model']} ({details['dim']} dims), "
               f"updated {details['updated_at']}")
    for article in details["articles"]:
        click.echo(f"  {article['id']}  {article['date'] or 'date unknown':>12}  "
                   f"{article['chunks']:>3} chunks  {article['title']}")


@main.command("eval")
@click.option("--qa", "qa_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Question set, one JSON object a line (id, question, answers, sources, answerable).")
@index_option
@json_option
def eval_command(qa_file: Path, index_dir: Path, as_json: bool) -> None:
    """Measure retrieval on a question set: recall@1/3/5 and MRR of the source articles.

    \b
    Example:
      rag eval --qa ../shared/eval/seeds_dev.jsonl
    """
    from rag.evaluation import evaluate_qa, load_questions

    results = evaluate_qa(Index.open(index_dir), load_questions(qa_file))
    if as_json:
        _print_json(results)
        return
    click.echo(f"{results['questions']} answerable questions from {qa_file}")
    for name in ("recall@1", "recall@3", "recall@5", "mrr"):
        click.echo(f"  {name:<9} {results[name]:.3f}")
    for miss in results["misses@5"]:
        click.echo(f"  missed at 5: {miss}")


@main.command()
@index_option
@click.option("--seeds", type=click.Path(path_type=Path), default=Path("seeds"), show_default=True,
              help="Folder of articles the index is built from.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True)
def serve(index_dir: Path, seeds: Path, host: str, port: int) -> None:
    """Build the index if it is missing or stale, then serve the web page.

    \b
    Example:
      rag serve --port 8080
    """
    report = build_index([seeds], index_dir, progress=_progress_bar("embedding"))
    if report.changed:
        click.echo(f"index updated: {report.summary()}")
    for message in report.failed:
        click.echo(f"warning: {message}", err=True)
    from ui.app import serve as serve_app

    serve_app(Index.open(index_dir), host=host, port=port)


def _print_report(report: UpdateReport, as_json: bool) -> None:
    if as_json:
        _print_json(report.to_json())
        return
    for message in report.skipped:
        click.echo(message, err=True)
    for message in report.failed:
        click.echo(f"error: {message}", err=True)
    click.echo(report.summary())


def _progress_bar(label: str) -> Callable[[int, int], None]:
    from tqdm import tqdm

    bar: dict[str, tqdm] = {}

    def update(done: int, total: int) -> None:
        if total == 0:
            return
        if "bar" not in bar:
            bar["bar"] = tqdm(total=total, desc=label, unit="chunk", file=sys.stderr, leave=False)
        bar["bar"].update(done - bar["bar"].n)
        if done >= total:
            bar["bar"].close()

    return update


def _print_json(payload: Any) -> None:
    click.echo(json.dumps(payload, ensure_ascii=False, indent=2))


def _date(date: Any) -> str:
    return date.isoformat() if date else "date unknown"


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":
    main()
