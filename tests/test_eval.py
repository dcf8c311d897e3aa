"""``qa eval`` end to end on a tiny SQuAD file, with the deterministic hashing embedder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qa.cli import main
from qa.config import Settings
from qa.errors import ConfigError
from qa.evaluation import evaluate as ev
from qa.store.index import load as load_index

REPO = Path(__file__).resolve().parents[1]
SQUAD_V11 = REPO.parent / "shared" / "eval" / "squad-v1.1-dev-a.json"
REQUIRED = ("recall@1", "recall@5", "recall@10", "mrr@10", "exact_match", "f1", "contains_gold",
            "answered_answerable")  # fmt: skip

# A "paragraph" may be a whole article: this one spans several chunks, its answer near the end.
LONG = (
    " ".join(
        f"Chapter {i} of the ledger records routine harbour tolls and nothing else of note."
        for i in range(60)
    )
    + " The lighthouse keeper Ottoline Brack repainted the beacon vermilion in 1871."
)


def _qa(qid: str, question: str, answer: str | None, context: str) -> dict[str, Any]:
    if answer is None:
        return {"id": qid, "question": question, "answers": [], "is_impossible": True}
    start = context.index(answer)
    return {"id": qid, "question": question, "answers": [{"text": answer, "answer_start": start}],
            "is_impossible": False}  # fmt: skip


def _paragraph(context: str, *qas: tuple[str, str, str | None]) -> dict[str, Any]:
    return {"context": context, "qas": [_qa(i, q, a, context) for i, q, a in qas]}


SOLAR_1 = (
    "Solar panels convert sunlight into electricity. "
    "The first silicon solar cell was built at Bell Labs in 1954."
)
SOLAR_2 = "Photovoltaic farms in deserts need cleaning robots: dust storms cut their output by a third."
TEA_1 = "Oolong tea is partially oxidised. Tieguanyin, an oolong, comes from Anxi County in Fujian province."
TEA_2 = "Matcha is stone-ground green tea powder, whisked with a bamboo chasen in the Japanese ceremony."
Q = {
    "s1": ("Where was the first silicon solar cell built?", "Bell Labs"),
    "s2": ("Which year saw the first tidal power station in Brittany?", None),  # is_impossible
    "s3": ("What do dust storms cut by a third on photovoltaic farms?", "output"),
    "t1": ("Which county does Tieguanyin oolong come from?", "Anxi County"),
    "t2": ("What bamboo tool whisks matcha powder?", "chasen"),
    "h1": ("What colour did lighthouse keeper Ottoline Brack repaint the beacon?", "vermilion"),
}


def squad(version: str = "v2.0") -> dict[str, Any]:
    def para(context: str, *ids: str) -> dict[str, Any]:
        return _paragraph(context, *((i, *Q[i]) for i in ids))

    articles = {
        "Solar_Power": [para(SOLAR_1, "s1", "s2"), para(SOLAR_2, "s3")],
        "Tea": [para(TEA_1, "t1"), para(TEA_2, "t2")],
        "Harbour_Ledger": [para(LONG, "h1")],
    }
    return {"version": version, "data": [{"title": t, "paragraphs": ps} for t, ps in articles.items()]}


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def settings() -> Settings:
    return Settings(model="hash-64", reader="none")


@pytest.fixture
def v2(tmp_path: Path) -> Path:
    return write(tmp_path / "tiny-v2.json", squad())


def test_load_squad_makes_one_document_per_paragraph(v2: Path) -> None:
    data = ev.load_squad(v2)
    assert data.version == "2.0"
    assert [d.doc_id for d in data.documents] == [
        "Solar_Power/p001.txt", "Solar_Power/p002.txt", "Tea/p001.txt", "Tea/p002.txt",
        "Harbour_Ledger/p001.txt",
    ]  # fmt: skip
    assert data.documents[1].title == "Solar Power ¶2"
    assert data.documents[0].text == SOLAR_1
    impossible = [q for q in data.questions if q.impossible]
    assert [q.qid for q in impossible] == ["s2"] and impossible[0].answers == ()
    assert data.questions[0].doc_id == "Solar_Power/p001.txt"


def test_evaluate_v2(v2: Path, settings: Settings, tmp_path: Path) -> None:
    report = ev.evaluate(v2, settings, progress=False, index_root=tmp_path / "idx")
    out = report.to_dict()
    for key in (*REQUIRED, "declined_unanswerable"):
        assert key in out, key
        assert 0.0 <= out[key] <= 1.0, key
    assert "declined_unindexed" not in out
    assert out["recall@1"] <= out["recall@5"] <= out["recall@10"]
    assert out["mrr@10"] >= out["recall@1"]
    assert out["recall@1"] >= 0.8  # distinctive words: BM25 finds every gold paragraph
    assert out["exact_match"] <= out["f1"]
    assert out["counts"]["answerable"] == 5 and out["counts"]["unanswerable"] == 1
    # The long document chunks, and its answer is still found and cited in its own sentence.
    assert out["counts"]["chunks"] > out["counts"]["documents"] == 5
    long_q = next(r for r in report.results if r.qid == "h1")
    assert long_q.gold_rank == 1 and long_q.contains_gold
    assert "vermilion" in long_q.prediction
    assert [p["threshold"] for p in out["curve"]][:3] == [0.0, 0.05, 0.1] and len(out["curve"]) == 21
    app = next(p for p in out["curve"] if p["threshold"] == settings.min_confidence)
    assert app["answered_answerable"] == out["answered_answerable"]
    assert app["declined_unanswerable"] == out["declined_unanswerable"]
    assert set(out["latency_ms"]) == set(ev.STAGES)
    assert all(v["median"] <= v["p95"] for v in out["latency_ms"].values())
    json.dumps(out)  # JSON-able as it is


def test_rerun_reuses_the_index(v2: Path, settings: Settings, tmp_path: Path) -> None:
    first = ev.evaluate(v2, settings, progress=False, index_root=tmp_path / "idx")
    again = ev.evaluate(v2, settings, progress=False, index_root=tmp_path / "idx")
    assert first.index["embedded"] > 0
    assert again.index["up_to_date"] and again.index["path"] == first.index["path"]
    assert again.metrics == first.metrics  # deterministic embedder, same answers


def test_other_chunking_gets_its_own_index(v2: Path, settings: Settings, tmp_path: Path) -> None:
    a = ev.evaluate(v2, settings, progress=False, index_root=tmp_path / "idx")
    b = ev.evaluate(v2, settings.replace(chunk_tokens=64, chunk_overlap=16), progress=False,
                    index_root=tmp_path / "idx")  # fmt: skip
    assert a.index["path"] != b.index["path"]
    assert b.counts["chunks"] > a.counts["chunks"]


def test_unindexed_documents_are_declined_not_scored(v2: Path, settings: Settings, tmp_path: Path) -> None:
    full = ev.evaluate(v2, settings, progress=False, index_root=tmp_path / "idx")
    part = ev.evaluate(v2, settings, unindexed=0.4, seed=3, progress=False, index_root=tmp_path / "idx")
    out = part.to_dict()
    assert "declined_unindexed" in out and 0.0 <= out["declined_unindexed"] <= 1.0
    assert out["counts"]["indexed_documents"] == 3 and out["index"]["unindexed_documents"] == 2
    assert out["counts"]["unindexed"] > 0
    assert out["counts"]["answerable"] + out["counts"]["unanswerable"] + out["counts"]["unindexed"] == 6
    assert part.index["embedded"] == 0  # started from the whole file's index
    assert part.index["path"] != full.index["path"]
    left_out = {r.doc_id for r in part.results if r.kind == "unindexed"}
    indexed = set(load_index(Path(part.index["path"])).documents)
    assert len(indexed) == 3 and not indexed & left_out


def test_v11_has_no_unanswerable_metric(tmp_path: Path, settings: Settings) -> None:
    data = squad("1.1")
    data["data"][0]["paragraphs"][0]["qas"].pop(1)  # v1.1: every question answerable
    report = ev.evaluate(write(tmp_path / "v11.json", data), settings, progress=False,
                         index_root=tmp_path / "idx")  # fmt: skip
    assert report.version == "1.1"
    assert "declined_unanswerable" not in report.to_dict()
    assert report.counts["answerable"] == 5


def _questions(sizes: dict[str, int]) -> list[ev.Question]:
    return [
        ev.Question(f"{a}-{i}", f"q {a} {i}", ("x",), f"{a}/p001.txt", a)
        for a, n in sizes.items()
        for i in range(n)
    ]


def test_limit_is_a_seeded_stratified_sample() -> None:
    questions = _questions({"A": 10, "B": 20, "C": 70})
    sample = ev.sample_questions(questions, 10, seed=0)
    assert len(sample) == 10
    assert [sum(q.article == a for q in sample) for a in "ABC"] == [1, 2, 7]
    assert sample == ev.sample_questions(questions, 10, seed=0)
    assert sample != ev.sample_questions(questions, 10, seed=1)
    assert sample != questions[:10]
    assert sample == sorted(sample, key=questions.index)  # file order kept
    # Largest remainder: 5 of sizes 1/1/3 -> exact 1, 1, 3
    assert len(ev.sample_questions(_questions({"A": 1, "B": 1, "C": 3}), 5)) == 5
    assert ev.sample_questions(questions, 1000) == questions
    with pytest.raises(ConfigError):
        ev.sample_questions(questions, 0)


def test_limit_runs_the_whole_corpus(v2: Path, settings: Settings, tmp_path: Path) -> None:
    report = ev.evaluate(v2, settings, limit=2, progress=False, index_root=tmp_path / "idx")
    assert report.counts["questions"] == 2
    assert report.counts["indexed_documents"] == 5


def test_choose_unindexed() -> None:
    ids = [f"d{i}" for i in range(10)]
    chosen = ev.choose_unindexed(ids, 0.2, seed=5)
    assert len(chosen) == 2 and chosen <= set(ids)
    assert chosen == ev.choose_unindexed(ids, 0.2, seed=5)
    assert ev.choose_unindexed(ids, 0.0) == set()
    with pytest.raises(ConfigError):
        ev.choose_unindexed(ids, 1.0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("{not json", "not valid JSON (line 1"),
        ('{"version": "1.1"}', "not SQuAD JSON"),
        ('{"data": [{"title": "T", "paragraphs": [{"qas": []}]}]}', '"context"'),
        ('{"data": [{"title": "T", "paragraphs": [{"context": "c", "qas": [{"id": "1", "question": "q?", '
         '"answers": []}]}]}]}', "no answer text"),
        ('{"data": [{"title": "T", "paragraphs": [{"context": "c", "qas": []}]}]}', "has no questions"),
    ],
)  # fmt: skip
def test_bad_files_say_what_is_wrong(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ev.EvalFileError, match=message.replace("(", r"\(")):
        ev.load_squad(path)


def test_cli_json_and_outputs(v2: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    argv = ["eval", str(v2), "--json", "--reader", "none", "--model", "hash-64", "--index",
            str(tmp_path / "idx"), "--out", str(out_dir), "--unindexed", "0.2", "-q"]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)  # stdout is the one JSON object, nothing else
    for key in (*REQUIRED, "declined_unanswerable", "declined_unindexed"):
        assert key in out
    assert out["command"].startswith("qa eval ") and "--unindexed 0.2" in out["command"]
    assert (out_dir / "eval.png").read_bytes()[:4] == b"\x89PNG"
    markdown = (out_dir / "eval.md").read_text(encoding="utf-8")
    assert "| Recall@5 |" in markdown and "← app" in markdown and out["command"] in markdown
    assert json.loads((out_dir / "eval.json").read_text(encoding="utf-8"))["f1"] == out["f1"]
    rows = (out_dir / "eval-questions.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(rows) == out["counts"]["questions"] == 6


def test_cli_markdown_by_default(v2: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["eval", str(v2), "--reader", "none", "--model", "hash-64", "--index", str(tmp_path), "-q"]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("## qa eval: tiny-v2.json (SQuAD 2.0)")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "no/such/file.json"], "does not exist"),
        (["eval", "{file}", "--limit", "0"], "--limit must be at least 1"),
        (["eval", "{file}", "--unindexed", "1.5"], "--unindexed must be a fraction"),
    ],
)
def test_cli_errors_exit_2_without_traceback(
    v2: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    argv = [a.replace("{file}", str(v2)) for a in argv]
    code = main([*argv, "--model", "hash-64", "--index", str(tmp_path), "-q"])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err


@pytest.mark.model
def test_real_pipeline_on_squad(capsys: pytest.CaptureFixture[str]) -> None:
    if not SQUAD_V11.exists():
        pytest.skip(f"{SQUAD_V11} is not here (it lives in ../shared/eval beside the repo)")
    # The shared cache under artifacts/ lets a re-run reuse the vectors of the whole file.
    argv = ["eval", str(SQUAD_V11), "--limit", "60", "--json", "-q",
            "--index", str(REPO / "artifacts" / "eval-index")]  # fmt: skip
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["counts"]["questions"] == 60 and out["counts"]["documents"] == 1222
    assert out["recall@5"] > 0.5
    assert out["recall@1"] > 0.3
    assert out["contains_gold"] > 0.3
    # Sentence selection quotes whole sentences, which caps token F1 against short answers.
    assert out["f1"] > (0.05 if out["settings"]["reader"] == "sentence" else 0.2)


def test_unindexed_must_leave_something_to_index(tmp_path: Path, settings: Settings) -> None:
    data = {"data": [{"title": "T", "paragraphs": [_paragraph(SOLAR_1, ("s1", *Q["s1"]))]}]}
    with pytest.raises(ConfigError, match="leaves no document"):
        ev.evaluate(write(tmp_path / "one.json", data), settings, unindexed=0.9, progress=False,
                    index_root=tmp_path / "idx")  # fmt: skip


def test_articles_choose_the_corpus_and_their_own_index(v2: Path, tmp_path: Path, settings: Settings) -> None:
    data = ev.load_squad(v2, ["Tea", "Harbour_Ledger"])
    assert [d.doc_id for d in data.documents] == ["Tea/p001.txt", "Tea/p002.txt", "Harbour_Ledger/p001.txt"]
    assert {q.doc_id.split("/")[0] for q in data.questions} == {"Tea", "Harbour_Ledger"}
    assert data.sha256 != ev.load_squad(v2).sha256 != ev.load_squad(v2, ["Tea"]).sha256
    report = ev.evaluate(v2, settings, articles=["Tea"], progress=False, index_root=tmp_path / "idx")
    assert report.counts["documents"] == 2 and report.settings["articles"] == ["Tea"]
    assert Path(report.index["path"]).name.startswith("tiny-v2-articles-")
    with pytest.raises(ev.EvalFileError, match="no article titled Coffee"):
        ev.load_squad(v2, ["Tea", "Coffee"])


def test_cli_articles_heldout_reads_the_reader_config(
    v2: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = tmp_path / "reader"
    reader.mkdir()
    (reader / "config.json").write_text(json.dumps({"holdout": ["Solar_Power"]}), encoding="utf-8")
    argv = ["eval", str(v2), "--articles", "heldout", "--json", "--reader", "none", "--model", "hash-64",
            "--index", str(tmp_path / "idx"), "-q"]  # fmt: skip
    monkeypatch.setenv("QA_READER_PATH", str(reader))
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["settings"]["articles"] == ["Solar_Power"] and out["counts"]["documents"] == 2
    assert "--articles heldout" in out["command"]
    (reader / "config.json").write_text("{}", encoding="utf-8")
    assert main(argv) == 2
    assert "names no held-out articles" in capsys.readouterr().err


def test_questions_from_asks_some_articles_over_the_whole_corpus(
    v2: Path, tmp_path: Path, settings: Settings
) -> None:
    report = ev.evaluate(v2, settings, questions_from=["Tea"], progress=False, index_root=tmp_path / "idx")
    assert report.counts["documents"] == 5  # the corpus is the whole file
    assert {r.doc_id.split("/")[0] for r in report.results} == {"Tea"}
    assert report.counts["questions"] == 2 and report.settings["questions_from"] == ["Tea"]
    with pytest.raises(ev.EvalFileError, match="no questions of article"):
        ev.evaluate(v2, settings, questions_from=["Coffee"], progress=False, index_root=tmp_path / "idx")


def test_a_hugging_face_reader_is_scored_on_the_shipped_readers_heldout_articles(tmp_path: Path) -> None:
    """A checkpoint folder's config is the model's own and names no held-out articles; one of
    ``training.reader``'s folders must name them, else a clear error."""
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text(json.dumps({"architectures": ["BertForQuestionAnswering"]}))
    assert ev.heldout_articles(tmp_path / "hf") == ev.heldout_articles(None) != []
    (tmp_path / "ours").mkdir()
    (tmp_path / "ours" / "config.json").write_text(json.dumps({"bert": {}}))
    with pytest.raises(ConfigError, match="names no held-out articles"):
        ev.heldout_articles(tmp_path / "ours")


def test_the_recorded_command_names_the_reader_folder() -> None:
    import argparse

    args = argparse.Namespace(
        file="f.json", limit=None, reader=None, model=None, index_dir=None, out=None, articles=None,
        questions_from="heldout", reader_path="/models/roberta", unindexed=0.2, seed=0,
        json=False, quiet=False,
    )  # fmt: skip
    line = ev.command_line(args)
    assert "--reader-path /models/roberta" in line and "--questions-from heldout" in line


def test_compare_pairs_two_eval_runs_as_qa_eval_scores_them(
    v2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.compare import compare_evals

    def run(name: str, *extra: str) -> dict[str, Any]:
        argv = ["eval", str(v2), "--json", "--reader", "none", "--model", "hash-64", "--index",
                str(tmp_path / "idx"), "--out", str(tmp_path / name), "--unindexed", "0.2", "-q",
                *extra]  # fmt: skip
        assert main(argv) == 0
        return dict(json.loads(capsys.readouterr().out))

    low = run("low")
    assert low["answered_answerable"] > 0
    monkeypatch.setenv("QA_MIN_CONFIDENCE", "1.0")  # nothing clears it: every question declined
    high = run("high")
    got = compare_evals(tmp_path / "low", tmp_path / "high")
    answerable = got["answerable"]
    assert isinstance(answerable, dict) and answerable["n"] == low["counts"]["answerable"] > 0
    for name, key in (("em", "exact_match"), ("f1", "f1"), ("contains_gold", "contains_gold"),
                      ("answered", "answered_answerable")):  # fmt: skip
        pair = answerable[name]
        assert pair["old"] == pytest.approx(low[key], abs=1e-4)
        assert pair["new"] == pytest.approx(high[key], abs=1e-4) and high[key] == 0
        assert pair["gain"] == pytest.approx(-low[key], abs=1e-3)  # a fraction, as old and new
        assert pair["low"] <= pair["gain"] <= pair["high"]
    for kind in ("unanswerable", "unindexed"):
        declined = got[kind]["declined"]  # type: ignore[index]
        assert declined["old"] == pytest.approx(low[f"declined_{kind}"], abs=1e-4)
        assert declined["new"] == 1.0
        assert declined["gain"] == pytest.approx(1 - low[f"declined_{kind}"], abs=1e-3)
    run("fewer", "--limit", "2")
    with pytest.raises(SystemExit, match="different questions"):
        compare_evals(tmp_path / "low", tmp_path / "fewer")
    run("more-left-out", "--unindexed", "0.5")  # the same questions, more paragraphs left out
    with pytest.raises(SystemExit, match="another kind"):
        compare_evals(tmp_path / "low", tmp_path / "more-left-out")
    # the command picks the comparison by what the folders hold, and says when one lacks the rows
    from training.compare import main as compare

    assert compare([str(tmp_path / "low"), str(tmp_path / "high")]) == 0
    assert json.loads(capsys.readouterr().out)["answerable"]["answered"]["new"] == 0
    with pytest.raises(SystemExit, match=r"has no eval-questions\.jsonl"):
        compare([str(tmp_path / "low"), str(tmp_path)])
