"""The CLI in-process, on the hashing fake (the model tests run it as a real subprocess)."""

import json

from conftest import invoke_cli


def run(*args, env=None):
    return invoke_cli(args, env=env)


def test_index_then_search_json_shape(tmp_path, seeds_copy):
    index_dir = str(tmp_path / "index")
    result = run("index", "--seeds", str(seeds_copy), "--index", index_dir)
    assert result.exit_code == 0, result.output
    assert "5 added, 0 updated, 0 removed, 0 unchanged, 0 failed" in result.output
    result = run("search", "ships built", "-k", "3", "--index", index_dir, "--json")
    payload = json.loads(result.output)
    assert payload["query"] == "ships built"
    assert [hit["rank"] for hit in payload["hits"]] == [1, 2, 3]
    assert set(payload["hits"][0]) >= {"rank", "score", "article_id", "title", "date", "chunk_id", "text", "start", "end"}


def test_index_directory_from_environment(tmp_path, seeds_copy):
    env = {"RAG_INDEX": str(tmp_path / "envindex")}
    assert run("index", "--seeds", str(seeds_copy), env=env).exit_code == 0
    result = run("info", "--json", env=env)
    assert result.exit_code == 0
    info = json.loads(result.output)
    assert info["counts"]["articles"] == 5
    assert info["counts"]["chunks"] == sum(a["chunks"] for a in info["articles"])
    assert {a["id"]: a["date"] for a in info["articles"]}["003_62729c1e8f798b4f"] is None


def test_bad_files_are_reported_and_exit_status_is_1(tmp_path, seeds_copy):
    (seeds_copy / "empty.txt").write_bytes(b"")
    (seeds_copy / "table.csv").write_text("a,b")
    result = run("index", "--seeds", str(seeds_copy), "--index", str(tmp_path / "index"))
    assert result.exit_code == 1
    assert "empty.txt: file is empty" in result.output
    assert "table.csv: skipped, only .txt and .md files are read" in result.output
    assert "5 added, 0 updated, 0 removed, 0 unchanged, 1 failed" in result.output


def test_missing_index_is_one_line_and_exit_1(tmp_path):
    result = run("search", "ships", "--index", str(tmp_path / "none"))
    assert result.exit_code == 1
    assert result.output.startswith("error: no index at ")
    assert result.output.count("\n") == 1 and "Traceback" not in result.output


def test_an_error_under_json_is_a_json_record(tmp_path, seeds_copy):
    result = run("search", "ships", "--index", str(tmp_path / "none"), "--json")
    assert result.exit_code == 1 and json.loads(result.output)["error"].startswith("no index at ")
    run("index", "--seeds", str(seeds_copy), "--index", str(tmp_path / "i"))
    result = run("ask", "   ", "--index", str(tmp_path / "i"), "--json")
    assert result.exit_code == 1 and json.loads(result.output) == {
        "error": "the question is empty: type a question about the articles"}


def test_long_question_is_refused(tmp_path, seeds_copy):
    run("index", "--seeds", str(seeds_copy), "--index", str(tmp_path / "i"))
    result = run("ask", "x" * 10_000, "--index", str(tmp_path / "i"))
    assert result.exit_code == 1 and "the limit is 2000" in result.output


def test_usage_error_exits_2():
    assert run("search").exit_code == 2
    assert run("search", "q", "-k", "0").exit_code == 2


def test_every_command_has_help_with_an_example():
    for command in ["index", "search", "ask", "info", "eval", "serve"]:
        result = run(command, "--help")
        assert result.exit_code == 0
        assert "Examples:" in result.output and "rag " + command in result.output


def test_a_follow_up_on_the_command_line_continues_an_earlier_json_answer(tmp_path, seeds_copy):
    index_dir = str(tmp_path / "i")
    run("index", "--seeds", str(seeds_copy), "--index", index_dir)
    first = run("ask", "Who chaired the meeting at Hoa Lac?", "--index", index_dir, "--json")
    (tmp_path / "first.json").write_text(first.output, encoding="utf-8")
    second = run("ask", "Who else attended it?", "--after", str(tmp_path / "first.json"), "--index", index_dir, "--json")
    assert second.exit_code == 0 and "Hoa Lac" in json.loads(second.output)["searched_for"]
    (tmp_path / "second.json").write_text(second.output, encoding="utf-8")
    third = run("ask", "When was it?", "--after", str(tmp_path / "first.json"), "--after", str(tmp_path / "second.json"),
                "--index", index_dir, "--json")
    assert "Hoa Lac" in json.loads(third.output)["searched_for"]  # the chain keeps its topic
    (tmp_path / "junk.json").write_text("[1, 2]", encoding="utf-8")
    refused = run("ask", "When was it?", "--after", str(tmp_path / "junk.json"), "--index", index_dir)
    assert refused.exit_code == 1 and "is not an answer `rag ask --json` wrote" in refused.output
    missing = run("ask", "When was it?", "--after", str(tmp_path / "none.json"), "--index", index_dir, "--json")
    assert missing.exit_code == 1 and "is not an answer" in json.loads(missing.output)["error"]
