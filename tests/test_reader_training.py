"""The span reader: a tiny training run end to end, and the shipped model on a seed passage."""

from __future__ import annotations

import json
import math
import re
import threading
from pathlib import Path

import pytest
import torch

from qa.answer.span_reader import PassageReading, Span, SpanReader, is_list_marker, tidy_span
from qa.errors import ModelError

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "seeds" / "000_c905c3656ea7082f.txt"

_PARAS = [
    (
        "The Eiffel Tower was completed in 1889 for the World's Fair in Paris. It was designed by the "
        "engineering company of Gustave Eiffel and is 330 metres tall.",
        [
            ("When was the Eiffel Tower completed?", "1889"),
            ("Who designed the Eiffel Tower?", "Gustave Eiffel"),
        ],
    ),
    (
        "Photosynthesis converts light energy into chemical energy. Plants store this energy in sugars "
        "made from carbon dioxide and water, releasing oxygen.",
        [("What gas do plants release?", "oxygen"), ("What do plants store energy in?", "sugars")],
    ),
    (
        "The Nile is a major north-flowing river in northeastern Africa. It flows into the "
        "Mediterranean Sea and is about 6,650 kilometres long.",
        [("Into which sea does the Nile flow?", "Mediterranean Sea")],
    ),
]


def _squad(tmp: Path) -> Path:
    """Tiny SQuAD-format v1.1/v2.0 files: two training articles and one held-out article."""
    data_v1, data_v2 = [], []
    for n, (ctx, qas) in enumerate(_PARAS):
        title = f"Article_{n}"
        v1_qas = [
            {"id": f"q{n}_{i}", "question": q, "answers": [{"text": a, "answer_start": ctx.index(a)}]}
            for i, (q, a) in enumerate(qas)
        ]
        data_v1.append({"title": title, "paragraphs": [{"context": ctx, "qas": v1_qas}]})
        v2_qas = [
            {
                "id": f"u{n}",
                "question": "What colour is the moon made of cheese?",
                "answers": [],
                "is_impossible": True,
            }
        ]
        data_v2.append({"title": title, "paragraphs": [{"context": ctx, "qas": v2_qas}]})
    folder = tmp / "data"
    folder.mkdir()
    (folder / "squad-v1.1-dev-a.json").write_text(json.dumps({"version": "1.1", "data": data_v1}))
    (folder / "squad-v2.0-dev-a.json").write_text(json.dumps({"version": "v2.0", "data": data_v2}))
    return folder


_TRAIN = {  # a tiny train file's articles: paragraphs and their (question, answer) pairs
    "Mount_Everest": [
        (
            "Mount Everest is the highest mountain above sea level, at 8,849 metres. It lies in the "
            "Mahalangur Himal sub-range of the Himalayas, on the border of Nepal and China.",
            [
                ("How high is Mount Everest?", "8,849 metres"),
                ("In which sub-range does Everest lie?", "Mahalangur Himal"),
            ],
        ),
        (
            "Tenzing Norgay and Edmund Hillary made the first confirmed ascent of Everest in 1953, "
            "climbing the southeast ridge from Nepal.",
            [
                ("Who climbed Everest with Edmund Hillary?", "Tenzing Norgay"),
                ("In which year was Everest first climbed?", "1953"),
            ],
        ),
        (
            "Climbers on the mountain face altitude sickness, storms and fierce winds. Most "
            "expeditions breathe bottled oxygen above 8,000 metres.",
            [("What do most expeditions breathe high on the mountain?", "bottled oxygen")],
        ),
    ],
    "Honey_bee": [
        (
            "A honey bee colony has a single queen, thousands of female workers and a few hundred "
            "male drones.",
            [("How many queens does a colony have?", "a single queen"), ("Which bees are male?", "drones")],
        ),
        (
            "Worker bees collect nectar from flowers and turn it into honey, which they store in "
            "combs of wax.",
            [
                ("Where do bees store honey?", "combs of wax"),
                ("What do bees collect from flowers?", "nectar"),
            ],
        ),
        (
            "A forager tells its sisters where flowers are with the waggle dance, whose angle "
            "points towards the food.",
            [("How does a bee tell others where flowers are?", "the waggle dance")],
        ),
    ],
}


def _train_file(tmp: Path) -> Path:
    """A tiny SQuAD v1.1 train file, in the format of ../shared/train/squad-v1.1-train.json."""
    data = []
    for title, paras in _TRAIN.items():
        paragraphs = [
            {
                "context": ctx,
                "qas": [
                    {
                        "id": f"{title}-{p}-{i}",
                        "question": q,
                        "answers": [{"text": a, "answer_start": ctx.index(a)}],
                    }
                    for i, (q, a) in enumerate(qas)
                ],
            }
            for p, (ctx, qas) in enumerate(paras)
        ]
        data.append({"title": title, "paragraphs": paragraphs})
    path = tmp / "squad-v1.1-train.json"
    path.write_text(json.dumps({"version": "1.1", "data": data}))
    return path


def test_tiny_training_run_ships_a_loadable_reader(tmp_path: Path) -> None:
    from training.reader import main

    data = _squad(tmp_path)
    out, work = tmp_path / "out", tmp_path / "work"
    rc = main([
        "--out", str(out), "--work", str(work), "--data-dir", str(data), "--holdout", "Article_2",
        "--epochs", "1", "--max-steps", "2", "--batch-size", "4", "--device", "cpu", "--seed", "1",
    ])  # fmt: skip
    assert rc == 0
    assert (out / "reader.safetensors").is_file()
    assert (out / "config.json").is_file()
    card = (out / "README.md").read_text()
    assert "Article_2" in card and "sha256" in card
    log = json.loads((work / "train_log.json").read_text())
    assert log["counts"]["answerable_questions"] == 4
    assert log["counts"]["unanswerable_v2.0"] >= 1

    assert SpanReader.available(out)
    reader = SpanReader(out, n_best=3)
    passage = _PARAS[0][0]
    other = "A short passage with nothing relevant in it."
    readings = reader.read("When was the Eiffel Tower completed?", [passage, other, ""])
    assert len(readings) == 3
    assert all(isinstance(r, PassageReading) for r in readings)
    for text, r in zip([passage, other, ""], readings, strict=True):
        assert len(r.spans) <= 3
        for s in r.spans:
            assert isinstance(s, Span)
            assert 0 <= s.start < s.end <= len(text)
            assert text[s.start : s.end] == text[s.start : s.end].strip()
        assert [s.score for s in r.spans] == sorted((s.score for s in r.spans), reverse=True)
    assert readings[0].spans
    assert readings[2].spans == []
    info = reader.info
    assert info["precision"] == "fp16" and len(info["sha256"]) == 64

    # resuming a finished run trains nothing more and ships again
    assert (
        main(
            [
                "--out",
                str(out),
                "--work",
                str(work),
                "--data-dir",
                str(data),
                "--holdout",
                "Article_2",
                "--epochs",
                "1",
                "--max-steps",
                "2",
                "--batch-size",
                "4",
                "--seed",
                "1",
                "--resume",
            ]
        )
        == 0
    )
    # a resumed run whose windows or batches would differ is refused, with what changed
    again = ["--out", str(out), "--work", str(work), "--data-dir", str(data), "--holdout", "Article_2"]
    again += ["--epochs", "1", "--batch-size", "4", "--seed", "1", "--resume", "--shared-norm", "1"]
    with pytest.raises(SystemExit, match=re.escape("other data or batches (shared_norm None -> 1.0)")):
        main(again)
    # other held-out articles make other examples: refused too
    other = [*again[:-2]]
    other[other.index("Article_2")] = "Article_1"
    with pytest.raises(SystemExit, match=re.escape("holdout ['Article_2'] -> ['Article_1']")):
        main(other)
    # a checkpoint written before the held-out titles and dev files were recorded still resumes
    ckpt = work / "checkpoint.pt"
    ck = torch.load(ckpt, map_location="cpu", weights_only=False)
    for key in ("holdout", "dev_files_sha256"):
        del ck["settings"][key]
    torch.save(ck, ckpt)
    assert main(again[:-2]) == 0

    # the abstention probe reads the held-out article: one question, one unanswerable, no other
    # paragraph (so, read without its own, the question has nothing to answer from)
    from training.probe import probe

    got = probe(out, data, "cpu")
    assert got["gold"]["n"] == 1 and got["distractor"]["n"] == 1
    assert got["v2"]["unanswerable"] == 1 and got["v2"]["answerable"] == 0
    assert math.isnan(got["v2"]["declined@90"])
    assert got["unindexed_sim"] == {"n": 1, "declined@90": 100.0, "declined@85": 100.0}
    # its paragraph is the only one read: both rules quote from it
    assert got["three_passages"]["by_margin"] == got["three_passages"]["by_span"]
    assert got["three_passages"]["by_margin"]["gold_passage_chosen"] == 100.0


def test_a_run_killed_after_a_checkpoint_resumes_to_the_same_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch
    from safetensors.torch import load_file

    import training.reader as loop

    data, train = _squad(tmp_path), _train_file(tmp_path)

    def run(name: str, *extra: str) -> tuple[Path, dict]:
        out, work = tmp_path / name, tmp_path / f"{name}-work"
        rc = loop.main([
            "--out", str(out), "--work", str(work), "--data-dir", str(data), "--holdout", "Article_2",
            "--train-file", str(train), "--article-negatives", "0.5", "--distractors", "0",
            "--epochs", "2", "--batch-size", "4", "--device", "cpu", "--seed", "3",
            "--eval-at-questions", "6,20", *extra,
        ])  # fmt: skip
        assert rc == 0
        return out, json.loads((work / "train_log.json").read_text())

    whole, whole_log = run("whole")
    counts = whole_log["counts"]
    assert counts["answerable_train_file"] == 10 and counts["article_negatives"] > 0
    per_epoch = math.ceil(counts["features"] / 4)
    assert per_epoch > 3 and whole_log["state"]["step"] == 2 * per_epoch

    # a run that checkpoints every step (``--ckpt-minutes 0``) dies right after saving step 3
    class Killed(Exception):
        pass

    def log_then_die(msg: str) -> None:
        print(msg)
        if msg == "checkpoint saved at step 3":
            raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(loop, "log", log_then_die)
        with pytest.raises(Killed):
            run("cut", "--ckpt-minutes", "0")
    ck = torch.load(tmp_path / "cut-work" / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert (ck["state"]["epoch"], ck["state"]["batch"], ck["state"]["step"]) == (0, 3, 3)
    capsys.readouterr()
    cut, cut_log = run("cut", "--resume")
    assert "epoch 0 batch 3 step 3" in capsys.readouterr().out  # resumed, not restarted
    assert len(cut_log["state"]["runs"]) == 2

    # the rest of epoch 1 and all of epoch 2 ran as in the uninterrupted run: the same weights
    def same_weights(a: Path, b: Path) -> bool:
        x, y = load_file(str(a)), load_file(str(b))
        return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)

    # (tensors, not file bytes: safetensors may write its metadata in another order)
    for epoch in (1, 2):
        name = f"epoch{epoch}_fp32.safetensors"
        assert same_weights(tmp_path / "whole-work" / name, tmp_path / "cut-work" / name)
    assert same_weights(whole / "reader.safetensors", cut / "reader.safetensors")
    losses = [e["train_loss"] for e in whole_log["state"]["epochs_log"]]
    assert [e["train_loss"] for e in cut_log["state"]["epochs_log"]] == losses
    assert all(math.isfinite(x) for x in losses)
    curve = [(c["questions_seen"], c["step"], c["heldout"]["f1"]) for c in whole_log["state"]["curve"]]
    assert len(curve) == 2 and curve[0][1] < 3 < curve[1][1]  # one point before the kill, one after
    assert [(c["questions_seen"], c["step"], c["heldout"]["f1"]) for c in cut_log["state"]["curve"]] == curve


def test_probe_declines_below_the_threshold_that_answers_the_share() -> None:
    from training.probe import NO_SPAN, best_of, declined_at

    answerable = [float(x) for x in range(1, 11)]  # the 10% quantile is 1.9
    assert declined_at(answerable, [0.0, 1.5, 5.0, 20.0], 0.9) == 50.0
    assert declined_at(answerable, [1.9, 2.0], 0.9) == 0.0  # at the threshold: answered
    assert declined_at(answerable, [float("-inf")], 0.5) == 100.0
    # a passage with no span among the answerable still leaves a finite threshold
    assert declined_at([NO_SPAN, *answerable[:9]], [NO_SPAN, 0.5, 3.0], 0.9) == 33.33
    assert math.isnan(declined_at([], [1.0], 0.9)) and math.isnan(declined_at([1.0], [], 0.9))
    assert best_of([1.0, 5.0, 2.0], [0, 0, 1], 3).tolist() == [5.0, 2.0, float("-inf")]


def test_probe_chooses_a_passage_by_margin_or_by_span_score() -> None:
    from training.reader_eval import choose_passages as choice

    gold, other = "Paris is in France.", "Lyon is in France too."
    questions = [{"question": "Where is Paris?", "context": gold, "golds": ["France"]}]
    pairs = [("Where is Paris?", gold), ("Where is Paris?", other)]
    readings = [  # the gold passage: lower span score, higher margin
        PassageReading(spans=[Span(score=4.0, start=12, end=18)], null_score=1.0),
        PassageReading(spans=[Span(score=5.0, start=0, end=4)], null_score=4.0),
    ]
    got = choice(questions, pairs, [0, 0], readings)
    assert got["by_margin"] == {"em": 100.0, "f1": 100.0, "gold_passage_chosen": 100.0}
    assert got["by_span"] == {"em": 0.0, "f1": 0.0, "gold_passage_chosen": 0.0}  # "Lyon"
    # a tie goes to the other passage, whichever order they were read in
    tied = [PassageReading(spans=[Span(score=5.0, start=12, end=18)], null_score=4.0), readings[1]]
    for order in ([0, 1], [1, 0]):
        got = choice(questions, [pairs[i] for i in order], [0, 0], [tied[i] for i in order])
        assert got["by_margin"]["gold_passage_chosen"] == 0.0 and got["by_span"]["f1"] == 0.0


@pytest.mark.model  # the bundled encoder's real weights, as a trained reader has
def test_training_from_a_reader_and_averaging_readers(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    from training.average import main as average
    from training.reader import main as train
    from training.reader_model import build_model_for_tests

    data = _squad(tmp_path)
    a = build_model_for_tests(tmp_path / "a", seed=0)
    b = build_model_for_tests(tmp_path / "b", seed=1)
    for folder in (a, b):  # as if trained with Article_2 held out
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "holdout": ["Article_2"]}))
    # --init starts from a's weights: one step at a tiny rate keeps them close to a's
    tuned = tmp_path / "tuned"
    rc = train([
        "--out", str(tuned), "--work", str(tmp_path / "work"), "--data-dir", str(data),
        "--holdout", "Article_2", "--init", str(a), "--epochs", "1", "--max-steps", "1",
        "--batch-size", "4", "--lr", "1e-7", "--device", "cpu", "--eval-limit", "0",
    ])  # fmt: skip
    assert rc == 0
    config = json.loads((tuned / "config.json").read_text())
    assert str(a) in config["settings"]["init"]
    # a reader that may have trained on this run's held-out article is refused
    with pytest.raises(SystemExit, match="held out"):
        train([
            "--out", str(tmp_path / "x"), "--work", str(tmp_path / "work2"), "--data-dir", str(data),
            "--holdout", "Article_1", "--init", str(a), "--max-steps", "1", "--device", "cpu",
        ])  # fmt: skip
    wa, wb = load_file(str(a / "reader.safetensors")), load_file(str(b / "reader.safetensors"))
    head = "qa_outputs.weight"
    assert not torch.equal(wa[head], wb[head])  # other seeds, other heads
    assert torch.allclose(
        load_file(str(tuned / "reader.safetensors"))[head].float(), wa[head].float(), atol=1e-3
    )

    soup = tmp_path / "soup"
    assert average(["--out", str(soup), "--data-dir", str(data), str(a), str(b)]) == 0
    ws = load_file(str(soup / "reader.safetensors"))
    for name in (head, "bert.encoder.layer.0.attention.self.query.weight"):
        mean = (wa[name].float() + wb[name].float()) / 2
        assert torch.allclose(ws[name].float(), mean, atol=1e-3)
    card = (soup / "README.md").read_text()
    assert "## Weight averaging" in card and str(b) in card
    # each ingredient's provenance is kept: a's card says how it trained, b has none
    card_a = "# a\n\n- Steps run: 7; training time 1.0 min on CPU\n- Command: `train a`\n"
    (a / "README.md").write_text(card_a)
    assert average(["--out", str(soup), "--data-dir", str(data), str(a), str(b)]) == 0
    card = (soup / "README.md").read_text()
    assert f"- `{a}`: Steps run: 7; training time 1.0 min on CPU; Command: `train a`" in card
    assert f"- `{b}`: no model card" in card
    assert "average's F1 gain" in card and "paired bootstrap" in card

    assert SpanReader(soup).read("When was the Eiffel Tower completed?", [_PARAS[0][0]])[0].spans

    # readers that do not share one architecture are refused with a message
    config_b = json.loads((b / "config.json").read_text())
    config_b["bert"]["num_hidden_layers"] = 5
    (b / "config.json").write_text(json.dumps(config_b))
    with pytest.raises(SystemExit, match="configs differ"):
        average(["--out", str(tmp_path / "bad"), "--data-dir", str(data), str(a), str(b)])
    with pytest.raises(SystemExit, match="not a reader folder"):
        average(["--out", str(tmp_path / "bad"), "--data-dir", str(data), str(a), str(tmp_path)])


def test_every_annotated_answer_is_a_label_and_its_mass_is_the_loss() -> None:
    import torch

    from qa.answer.span_reader import load_tokenizer
    from training.reader_features import make_features
    from training.reader_model import label_masks, marginal_nll

    ctx = _PARAS[0][0]
    q = {
        "id": "q",
        "question": "Who designed the Eiffel Tower?",
        "answers": [  # three annotators, two distinct spans; the repeat counts once
            {"text": "Gustave Eiffel", "answer_start": ctx.index("Gustave Eiffel")},
            {
                "text": "the engineering company of Gustave Eiffel",
                "answer_start": ctx.index("the engineering"),
            },
            {"text": "Gustave Eiffel", "answer_start": ctx.index("Gustave Eiffel")},
        ],
    }
    from training.reader_data import _example

    ex = _example(q, ctx, "v1.1")
    assert len(ex["answers"]) == 2 and ex["answer_text"] == "Gustave Eiffel"
    feats = make_features(load_tokenizer(), [ex], max_length=256, stride=96)
    spans = feats["spans"][0]
    assert (feats["starts"][0], feats["ends"][0]) == spans[0]  # the first answer comes first
    assert len(spans) == 2 and spans[0][1] == spans[1][1] and spans[0][0] != spans[1][0]
    width = len(feats["ids"][0])
    ms, me = label_masks(feats, [0], width)
    assert ms.sum().item() == 2 and me.sum().item() == 1  # two starts, one shared end

    logits = torch.randn(1, width)
    ce = torch.nn.functional.cross_entropy(logits, torch.tensor([spans[0][0]]))
    one = torch.zeros_like(ms)
    one[0, spans[0][0]] = True
    assert marginal_nll(logits, one).item() == pytest.approx(ce.item(), abs=1e-5)  # one gold: CE
    assert marginal_nll(logits, ms).item() < ce.item()  # more gold positions, more mass

    unanswerable = _example({**q, "answers": [], "is_impossible": True}, ctx, "v2.0-unanswerable")
    assert unanswerable["answers"] == []
    feats = make_features(load_tokenizer(), [unanswerable], max_length=256, stride=96)
    assert feats["spans"] == [[(0, 0)]]  # no answer: [CLS]


def test_distractors_are_the_top_other_paragraphs_and_later_ones_skip_answers() -> None:
    from training.reader_data import bm25_distractors

    corpus = [
        "The Eiffel Tower in Paris was designed by the company of Gustave Eiffel.",  # gold
        "Who designed the Eiffel Tower in Paris? Gustave Eiffel built it for the fair of 1889.",
        "Paris holds the Eiffel Tower, the Louvre and the tower of Notre-Dame cathedral.",
        "The Eiffel Tower is repainted every seven years; Gustave Eiffel chose the colour.",
        "Tower Bridge in London opened in 1894 over the River Thames.",
        "Bananas are rich in potassium.",
    ]
    q = "Who designed the Eiffel Tower in Paris?"
    assert bm25_distractors([q], [corpus[0]], corpus) == [[corpus[1]]]  # the top other one
    plain = bm25_distractors([q], [corpus[0]], corpus, n=3)[0]
    assert plain == [corpus[1], corpus[2], corpus[3]]
    # with the answer to avoid, the first pick stays (as the shipped recipe had it) and the
    # later ones skip a paragraph that holds the answer
    avoid = bm25_distractors([q], [corpus[0]], corpus, n=3, avoid=[["gustave EIFFEL"]])[0]
    assert avoid == [corpus[1], corpus[2], corpus[4]]
    assert bm25_distractors([], [], corpus, n=2) == []


def test_retriever_distractors_skip_the_gold_repeats_and_paragraphs_holding_an_answer() -> None:
    from training.distractors import pick

    hits = [
        ("a/p001.txt", "The gold paragraph: it won 2 titles."),  # the question's own
        ("b/p001.txt", "Founded in 2015 by two engineers."),  # "2" only inside "2015": kept
        ("b/p001.txt", "Founded in 2015 by two engineers."),  # a second chunk of it: once
        ("c/p001.txt", "They won 2 more in the next decade."),  # holds the answer "2": skipped
        ("d/p001.txt", "THE SECOND season ended early."),  # holds "second", any case: skipped
        ("e/p001.txt", "A quiet year for the club."),
        ("f/p001.txt", "Nothing else happened."),
    ]
    assert pick(hits, "a/p001.txt", ["2", "Second", " "]) == [hits[1][1], hits[5][1], hits[6][1]]
    assert pick(hits, "a/p001.txt", ["2"], keep=1) == [hits[1][1]]
    assert pick(hits[:1], "a/p001.txt", ["2"]) == []
    # an answer's end that is no word character needs no word boundary there
    texts = [("x", "Sent to the U.S. army."), ("y", "It cost US$5 then."), ("z", "Not in the USA.")]
    assert pick(texts, "-", ["U.S."]) == ["It cost US$5 then.", "Not in the USA."]
    assert pick(texts, "-", ["$5"]) == ["Sent to the U.S. army.", "Not in the USA."]


def test_a_distractor_file_supplies_the_picks_and_a_file_for_other_data_is_refused(tmp_path: Path) -> None:
    from qa.answer.span_reader import sha256_file
    from training.reader_data import build_data, paragraph_key

    data = _squad(tmp_path)
    hold = ["Article_2"]
    eiffel, plants, nile = (ctx for ctx, _ in _PARAS)
    good = {
        "holdout": hold,
        "file_sha256": sha256_file(data / "squad-v1.1-dev-a.json"),
        "picks": {"q0_0": [paragraph_key(plants)], "q1_0": []},
    }

    def build(mined: object, n: int = 1) -> tuple[list, dict]:
        f = tmp_path / "distractors.json"
        f.write_text(json.dumps(mined))
        examples, counts, _, _ = build_data(data, hold, 0, None, n, f)
        return examples, counts

    examples, counts = build(good)
    dis = {e["id"]: e["context"] for e in examples if e["source"] == "distractor"}
    assert dis["q0_0#distractor"] == plants  # the file's pick
    assert "q1_0#distractor" not in dis  # the file has none for it: none
    assert dis["q0_1#distractor"] == plants and dis["q1_1#distractor"] == eiffel  # not in the file: BM25's
    assert nile not in dis.values()  # the held-out article is never a distractor
    assert counts["distractors_from_file"] == 2 and counts["distractors"] == 3
    from training.reader_card import _distractor_lines

    assert "2 questions, the app's hybrid retriever" in " ".join(_distractor_lines(counts))
    for bad, why in (
        ({**good, "holdout": ["Article_1"]}, "holding out"),
        ({**good, "file_sha256": "0" * 64}, "another squad-v1.1-dev-a.json"),
        ({**good, "picks": {"q0_0": [paragraph_key(nile)]}}, "non-training"),
        ({"holdout": hold}, "not a training.distractors file"),
        ({**good, "picks": {"q0_0": "abc"}}, "not lists of paragraph keys"),
        ({**good, "holdout": None}, "not a list of titles"),
        ([1, 2], "not a training.distractors file"),
    ):
        with pytest.raises(SystemExit, match=why):
            build(bad)


@pytest.mark.model  # the bundled embedding model, through the app's own retrieval
def test_distractors_are_mined_with_the_apps_retriever(tmp_path: Path) -> None:
    from training.distractors import main
    from training.reader_data import build_data, paragraph_key

    data = _squad(tmp_path)
    out = tmp_path / "mined.json"
    argv = ["--out", str(out), "--data-dir", str(data), "--holdout", "Article_2"]
    assert main([*argv, "--index-dir", str(tmp_path / "index")]) == 0
    mined = json.loads(out.read_text())
    assert main(["--out", str(tmp_path / "x.json"), "--data-dir", str(tmp_path / "none")]) == 2
    assert not (tmp_path / "x.json").exists()
    assert main([*argv, "--index-dir", str(tmp_path / "index"), "--out", str(tmp_path)]) == 2  # a folder
    eiffel, plants, nile = (ctx for ctx, _ in _PARAS)
    assert mined["holdout"] == ["Article_2"] and mined["questions"] == 4
    # two training paragraphs: each question's only other one, unless it holds the answer
    assert mined["picks"]["q0_0"] == [paragraph_key(plants)]
    assert mined["picks"]["q1_1"] == [paragraph_key(eiffel)]
    examples, counts, _, _ = build_data(data, ["Article_2"], 0, None, 1, out)
    assert counts["distractors_from_file"] == 4
    assert all(e["context"] != nile for e in examples)


def test_shared_norm_softmax_spans_a_questions_windows_and_keeps_them_in_one_batch(tmp_path: Path) -> None:
    import random

    import torch

    from qa.answer.span_reader import load_tokenizer
    from training.reader_data import _example, build_data
    from training.reader_features import (
        batch_groups,
        feature_units,
        make_batches,
        make_features,
        make_unit_batches,
    )
    from training.reader_model import context_mask, first_answer_masks, shared_norm_nll

    # two rows of one question (gold window, distractor window) and a row alone
    am = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    tt = torch.tensor([[0, 0, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1], [0, 1, 1, 0, 0, 0]])
    ctx = context_mask(am, tt)  # second segment less its closing [SEP]
    assert ctx.tolist() == [
        [False, False, True, True, False, False],
        [False, False, True, True, True, False],
        [False, True, False, False, False, False],
    ]
    sp, ep = torch.tensor([3, 0, 0]), torch.tensor([3, 0, 0])
    ms, me = first_answer_masks(sp, ep, 6)
    assert ms[0].nonzero().flatten().tolist() == [3] and not ms[1:].any() and torch.equal(ms, me)
    logits = torch.randn(3, 6)
    nll = shared_norm_nll(logits, ctx, ms, [[0, 1], [2]])  # the row alone has no gold: skipped
    pool = torch.cat([logits[0, 2:4], logits[1, 2:5]])  # the five passage tokens of both windows
    expected = torch.logsumexp(pool, 0) - logits[0, 3]
    assert nll.item() == pytest.approx(expected.item(), abs=1e-5)
    # a distractor that outscores the gold window raises the loss: scores must compare
    worse = logits.clone()
    worse[1, 2:5] += 5.0
    assert shared_norm_nll(worse, ctx, ms, [[0, 1]]).item() > nll.item()
    assert shared_norm_nll(logits, ctx, ms, [[2]]).item() == 0.0  # no gold anywhere: no loss
    # gradients stay finite when a group has no gold and a row no passage tokens
    leaf = logits.clone().requires_grad_(True)
    empty = ctx.clone()
    empty[2] = False
    (shared_norm_nll(leaf, empty, ms, [[0, 1, 2]]) + shared_norm_nll(leaf, empty, ms, [[2]])).backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all() and not leaf.grad[2].any()
    # a gold answer in two overlapping windows: the mass on both counts
    both = ms.clone()
    both[1, 3] = True
    two = shared_norm_nll(logits, ctx, both, [[0, 1]])
    expected = torch.logsumexp(pool, 0) - torch.logsumexp(torch.stack([logits[0, 3], logits[1, 3]]), 0)
    assert two.item() == pytest.approx(expected.item(), abs=1e-5)

    # on real data: a question's gold and distractor windows are one unit, and batches hold
    # whole units
    data = _squad(tmp_path)
    examples, _, _, _ = build_data(data, ["Article_2"], seed=0, limit=None)
    assert {e["group"] for e in examples if e["source"] == "distractor"} <= {
        e["id"] for e in examples if e["source"] == "v1.1"
    }
    feats = make_features(load_tokenizer(), examples, max_length=256, stride=96)
    units = feature_units(feats, examples)
    assert sorted(i for u in units for i in u) == list(range(len(feats["ids"])))
    grouped = [u for u in units if len(u) > 1]
    assert len(grouped) == sum(e["source"] == "v1.1" for e in examples)  # gold + its distractor
    lengths = [len(x) for x in feats["ids"]]
    batches = make_unit_batches(units, lengths, 3, random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(len(feats["ids"])))
    for u in grouped:
        assert any(set(u) <= set(b) for b in batches)
    assert all(len(b) <= 3 for b in batches)
    for b in batches:  # a question's rows in a batch are its whole unit
        for rows in batch_groups(feats, examples, b):
            assert sorted(b[r] for r in rows) in [sorted(u) for u in grouped]
    # a unit larger than the batch is a batch of its own, never split
    big = make_unit_batches([[0, 1, 2], [3]], [5, 5, 5, 5], 2, random.Random(0))
    assert sorted(map(sorted, big)) == [[0, 1, 2], [3]]
    # without shared norm every window is its own unit: full batches, each of similar lengths
    plain = make_batches(lengths, 4, random.Random(0))
    assert sorted(i for b in plain for i in b) == list(range(len(lengths)))
    assert sum(len(b) < 4 for b in plain) <= 1 and all(len(b) <= 4 for b in plain)
    assert all(lengths[b[0]] <= lengths[b[-1]] for b in plain)  # sorted within a batch
    alone = _example({"id": "u", "question": "q?", "answers": [], "is_impossible": True}, "c", "v2.0")
    assert "group" not in alone  # an unanswerable question joins no group


@pytest.mark.parametrize("label", [[], ["--all-answers"]])
def test_tiny_shared_norm_run_trains_every_batch_and_records_its_loss(
    tmp_path: Path, label: list[str]
) -> None:
    from training.reader import main

    data = _squad(tmp_path)
    out, work = tmp_path / "out", tmp_path / "work"
    rc = main([
        "--out", str(out), "--work", str(work), "--data-dir", str(data), "--holdout", "Article_2",
        "--epochs", "2", "--batch-size", "3", "--device", "cpu", "--seed", "1",
        "--shared-norm", "1", "--eval-limit", "0", *label,
    ])  # fmt: skip
    assert rc == 0
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["shared_norm"] == 1.0
    assert "--shared-norm" in (out / "README.md").read_text()
    log = json.loads((work / "train_log.json").read_text())
    steps = log["settings"]["total_steps"]
    assert steps > 2 and log["state"]["step"] == steps  # unit batches, counted ahead, all run
    assert all(math.isfinite(e["train_loss"]) for e in log["state"]["epochs_log"])


@pytest.mark.parametrize("n", ["-1", "5", "x"])
def test_distractor_count_out_of_range_is_refused(n: str, capsys: pytest.CaptureFixture[str]) -> None:
    from training.reader import parse_args

    assert parse_args(["--out", "x", "--distractors", "3"]).distractors == 3
    assert parse_args(["--out", "x", "--distractors", "0"]).distractors == 0  # same-article negatives only
    with pytest.raises(SystemExit) as exc:
        parse_args(["--out", "x", "--distractors", n])
    assert exc.value.code == 2 and "--distractors" in capsys.readouterr().err


@pytest.mark.model  # the bundled encoder's real weights, as a trained reader has
def test_distillation_from_an_ensemble_of_readers(tmp_path: Path) -> None:
    import numpy as np
    import torch

    from training.reader import main as train
    from training.reader_distill import distill_loss, teacher_targets
    from training.reader_model import build_model_for_tests

    data = _squad(tmp_path)
    teachers = [build_model_for_tests(tmp_path / f"t{i}", seed=i) for i in range(2)]
    for folder in teachers:  # as if trained with Article_2 held out
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "holdout": ["Article_2"]}))
    feats = {"ids": [[101, 2054, 102, 3000, 102], [101, 2054, 102]], "types": [[0, 0, 0, 1, 1], [0, 0, 0]]}
    feats.update(starts=[3, 0], ends=[3, 0])
    targets = teacher_targets(teachers, feats, ["Article_2"], torch.device("cpu"), temp=2.0)
    for (start, end), ids in zip(targets, feats["ids"], strict=True):
        assert start.shape == end.shape == (len(ids),)  # no padding in a target
        assert start.sum() == pytest.approx(1.0, abs=1e-5) and end.sum() == pytest.approx(1.0, abs=1e-5)
    alone = teacher_targets(teachers[:1], feats, ["Article_2"], torch.device("cpu"), temp=2.0)
    other = teacher_targets(teachers[1:], feats, ["Article_2"], torch.device("cpu"), temp=2.0)
    assert np.allclose(targets[0][0], (alone[0][0] + other[0][0]) / 2, atol=1e-6)  # the mean
    with pytest.raises(SystemExit, match="did not hold out this run's articles"):
        teacher_targets(teachers, feats, ["Article_1"], torch.device("cpu"), temp=2.0)
    narrow = json.loads((teachers[1] / "config.json").read_text())
    narrow["bert"]["hidden_size"] = 192  # weights of another shape
    (tmp_path / "narrow").mkdir()
    (tmp_path / "narrow" / "config.json").write_text(json.dumps(narrow))
    (tmp_path / "narrow" / "reader.safetensors").write_bytes(
        (teachers[1] / "reader.safetensors").read_bytes()
    )
    with pytest.raises(SystemExit, match=r"--teacher: .*narrow does not fit"):
        teacher_targets([tmp_path / "narrow"], feats, ["Article_2"], torch.device("cpu"), temp=2.0)
    for bad in (["--kd-alpha", "1.5"], ["--kd-temp", "0"]):
        with pytest.raises(SystemExit):
            train(["--out", str(tmp_path / "x"), *bad])

    logits = torch.randn(3, 7)
    same = torch.softmax(logits / 2.0, -1)
    assert distill_loss(logits, same, 2.0).item() == pytest.approx(0.0, abs=1e-5)
    assert distill_loss(logits, torch.softmax(-logits, -1), 2.0).item() > 0.1

    out = tmp_path / "student"
    rc = train([
        "--out", str(out), "--work", str(tmp_path / "work"), "--data-dir", str(data),
        "--holdout", "Article_2", "--teacher", str(teachers[0]), "--teacher", str(teachers[1]),
        "--all-answers", "--epochs", "1", "--max-steps", "1", "--batch-size", "4", "--device", "cpu",
        "--eval-limit", "0",
    ])  # fmt: skip
    assert rc == 0
    settings = json.loads((out / "config.json").read_text())["settings"]
    assert settings["all_answers"] is True and settings["kd_alpha"] == 0.5
    assert [t.split(" ")[0] for t in settings["teachers"]] == [str(t) for t in teachers]


def test_paired_gain_of_one_reader_over_another() -> None:
    from training.average import paired_gain

    same = paired_gain([0.5, 0.2, 1.0], [0.5, 0.2, 1.0])
    assert same == {"gain": 0.0, "low": 0.0, "high": 0.0}
    shift = paired_gain([0.6, 0.3, 1.0], [0.5, 0.2, 0.9])  # +0.1 on every question
    assert shift["gain"] == pytest.approx(10.0) and shift["low"] == pytest.approx(10.0)
    mixed = paired_gain([1.0, 1.0, 0.0, 1.0] * 10, [0.0, 1.0, 0.0, 1.0] * 10)  # a quarter gain 1
    assert mixed["gain"] == 25.0 and 0.0 < mixed["low"] < 25.0 < mixed["high"] < 50.0


def test_long_passage_is_windowed_with_exact_offsets(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from training.reader_model import build_model_for_tests

    out = build_model_for_tests(tmp_path / "m")
    reader = SpanReader(out, max_length=64, stride=16)
    passage = " ".join(f"Sentence {i} says the value is {i * 7}." for i in range(60))
    (r,) = reader.read("What does sentence 42 say?", [passage])
    assert r.spans
    for s in r.spans:
        assert 0 <= s.start < s.end <= len(passage)


def test_missing_or_corrupt_weights_raise_model_error(tmp_path: Path) -> None:
    assert not SpanReader.available(tmp_path)
    with pytest.raises(ModelError, match="not found"):
        SpanReader(tmp_path).load()
    (tmp_path / "reader.safetensors").write_bytes(b"not a safetensors file")
    (tmp_path / "config.json").write_text(json.dumps({"bert": {"hidden_size": 384}}))
    with pytest.raises(ModelError):
        SpanReader(tmp_path).load()


def test_tidy_span_trims_punctuation_but_keeps_abbreviations() -> None:
    text = 'He said "Paris, France." in the U.S. today.'
    s, e = tidy_span(text, text.index('"'), text.index("in") - 1)
    assert text[s:e] == "Paris, France"
    s, e = tidy_span(text, text.index("U.S."), text.index("U.S.") + 4)
    assert text[s:e] == "U.S."


def test_list_enumerators_are_not_answers() -> None:
    text = (
        "Sources\n\n  1. Biden authorizes\n  2. Another\nb) item\niv. fourth\n"
        "1989. The wall fell\nversion 2. is out"
    )

    def at(word: str, nth: int = 0) -> bool:
        start = -1
        for _ in range(nth + 1):
            start = text.index(word, start + 1)
        return is_list_marker(text, start, start + len(word))

    assert at("1") and at("2") and at("b") and at("iv")
    assert not at("1989")  # a year opening a line is content
    assert not at("2", 1)  # "version 2." has words before it on its line
    assert not at("Biden") and not at("Sources")


@pytest.mark.model
def test_shipped_reader_finds_the_missile_system() -> None:
    if not SpanReader.available():
        pytest.skip("the shipped reader weights are absent")
    text = SEED.read_text(encoding="utf-8")
    passage = next(p for p in text.split("\n\n") if "is expected to be deployed by Ukraine" in p)
    reader = SpanReader()
    results: list[list[PassageReading]] = []

    def ask() -> None:
        results.append(reader.read("Which missile system will Ukraine deploy?", [passage]))

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3
    (reading,) = results[0]
    assert reading.spans
    best = reading.spans[0]
    answer = passage[best.start : best.end]
    assert "Army Tactical Missile System" in answer
    assert answer == answer.strip()
    assert [r[0].spans[0] for r in results] == [best] * 3
    info = reader.info
    assert info["precision"] == "fp16" and len(info["sha256"]) == 64


def test_two_article_negatives_each_are_distinct_same_article_paragraphs_without_the_answer(
    tmp_path: Path,
) -> None:
    from training.reader_data import build_data

    data, train = _squad(tmp_path), _train_file(tmp_path)
    paras = {ctx: title for title, ps in _TRAIN.items() for ctx, _ in ps}
    one, c1, _, _ = build_data(data, ["Article_2"], 0, None, 0, train_files=[train], article_negatives=1.0)
    two, c2, _, _ = build_data(data, ["Article_2"], 0, None, 0, train_files=[train], article_negatives=2.0)
    # every train-file article has 3 paragraphs: a question's two others are both negatives (the
    # dev articles' questions are asked too, but their articles have no other paragraph)
    assert c1["article_negatives"] == 10 and c2["article_negatives"] == 20
    assert c2["article_negatives_asked"] == 2 * c2["answerable_questions"] == 28
    by_question: dict[str, list[str]] = {}
    ids: dict[str, list[str]] = {}
    for e in two:
        if e["source"] == "article-negative":
            assert e["answer_start"] is None and e["answers"] == []
            by_question.setdefault(e["group"], []).append(e["context"])
            ids.setdefault(e["group"], []).append(e["id"])
    assert all(sorted(v) == [k + "#article-negative", k + "#article-negative2"] for k, v in ids.items())
    gold = {e["id"]: e for e in two if e["source"] == "train"}
    assert set(by_question) == set(gold)
    for qid, negs in by_question.items():
        e = gold[qid]
        assert len(set(negs)) == 2 and e["context"] not in negs
        assert {paras[n] for n in negs} == {paras[e["context"]]}
        assert not any(t.lower() in n.lower() for n in negs for _, t in e["answers"])
    # the first of two is the one negative of 1.0 (its best), the same for every question
    first = {e["id"]: e["context"] for e in one if e["source"] == "article-negative"}
    assert first == {e["id"]: e["context"] for e in two if e["id"].endswith("#article-negative")}
    # 1.5: one each and a second for half of the 14 questions (those of the train file's
    # articles get it; the dev articles' have no other paragraph)
    f15, c15, _, _ = build_data(data, ["Article_2"], 0, None, 0, train_files=[train], article_negatives=1.5)
    assert c15["article_negatives_asked"] == 14 + 7
    seconds = sum(e["id"].endswith("#article-negative2") for e in f15)
    assert 0 < seconds <= 7 and c15["article_negatives"] == 10 + seconds
    # 3: as many as the article offers (two others here), never the same paragraph twice
    _, c3, _, _ = build_data(data, ["Article_2"], 0, None, 0, train_files=[train], article_negatives=3.0)
    assert c3["article_negatives"] == 20 and c3["article_negatives_asked"] == 42


def test_article_negatives_and_train_files_are_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.reader import parse_args

    train = _train_file(tmp_path)
    assert parse_args(["--out", "x", "--article-negatives", "3"]).article_negatives == 3.0
    for bad, says in (
        (["--article-negatives", "3.1"], "between 0 and 3"),
        (["--article-negatives", "-0.5"], "between 0 and 3"),
        (["--train-file", str(train), "--train-file", str(train)], "the same file twice"),
    ):
        with pytest.raises(SystemExit):
            parse_args(["--out", "x", *bad])
        assert says in capsys.readouterr().err


def test_names_in_questions_and_paragraphs() -> None:
    from training.reader_data import names_in

    def names(text: str) -> list[str]:
        found = names_in(text)
        assert all(text[s:t] == n for s, t, n in found)  # offsets point at the name
        return [n for _, _, n in found]

    # a question's first word is capitalised as every first word is; a year is a name
    assert names("When did Kublai Khan move the capital to Dadu in 1271?") == ["Kublai Khan", "Dadu", "1271"]
    # linking words inside, no leading "The", no trailing possessive
    assert names("What ended the Treaty of Paris's war?") == ["Treaty of Paris"]
    assert names("Who signed the Edict of Nantes?") == ["Edict of Nantes"]
    # a capitalised opener is no part of the name after it; one-word openers are skipped
    assert names("In Beichuan County, Wen ordered troops. While Hu waited.") == [
        "Beichuan County",
        "Wen",
        "Hu",
    ]
    assert names("what about 2022 and 1999, not 3000 or 12345?") == ["2022", "1999"]


def test_swap_negatives_ask_the_gold_paragraph_about_a_name_it_lacks(tmp_path: Path) -> None:
    from training.reader_data import build_data, names_in

    data, train = _squad(tmp_path), _train_file(tmp_path)
    article_of = {ctx: title for title, ps in _TRAIN.items() for ctx, _ in ps}
    names_of = {
        title: {n for ctx, _ in ps for _, _, n in names_in(ctx)} for title, ps in _TRAIN.items()
    }  # fmt: skip
    plain, c0, _, _ = build_data(data, ["Article_2"], 0, None, 0, train_files=[train])
    ex, counts, _, _ = build_data(data, ["Article_2"], 0, None, 0, train_files=[train], swap_share=1.0)
    assert "swap_negatives" not in c0
    assert counts["swap_negatives_asked"] == counts["answerable_questions"] == 14
    gold = {e["id"]: e for e in ex if e["source"] in ("train", "v1.1")}
    swaps = [e for e in ex if e["source"] == "swap-negative"]
    assert 0 < len(swaps) == counts["swap_negatives"] <= 14
    # the answerable examples are those without swaps, in the same order
    assert [e for e in ex if e["source"] != "swap-negative"] == plain
    for s in swaps:
        e = gold[s["group"]]
        assert s["id"] == e["id"] + "#swap" and s["context"] == e["context"]
        assert s["answer_start"] is None and s["answers"] == [] and s["question"] != e["question"]
        # one name of the question stands for another: the changed question is the old one with it
        ((old, new),) = {
            (o, n)
            for _, _, o in names_in(e["question"])
            for _, _, n in names_in(s["question"])
            if e["question"].replace(o, n, 1) == s["question"]
        }
        assert old.lower() in e["context"].lower() and new.lower() not in e["context"].lower()
        assert not any(old.lower() in t.lower() or t.lower() in old.lower() for _, t in e["answers"])
        title = article_of.get(e["context"])
        assert title is not None  # only questions of an article with other paragraphs swap
        assert any(new in n for n in names_of[title])  # a name of its own article
    # the draw is the seed's
    again, _, _, _ = build_data(data, ["Article_2"], 0, None, 0, train_files=[train], swap_share=1.0)
    assert [e["question"] for e in again if e["source"] == "swap-negative"] == [s["question"] for s in swaps]


def test_swap_negatives_share_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    from training.reader import parse_args

    assert parse_args(["--out", "x", "--swap-negatives", "0.5"]).swap_negatives == 0.5
    for bad in ("1.5", "-0.1"):
        with pytest.raises(SystemExit):
            parse_args(["--out", "x", "--swap-negatives", bad])
        assert "between 0 and 1" in capsys.readouterr().err


@pytest.mark.model
def test_swap_probe_reads_held_out_questions_as_written_and_swapped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from qa.answer.span_reader import DEFAULT_PATH
    from training.swap_probe import heldout_swaps, main

    if not SpanReader.available():
        pytest.skip("the shipped reader weights are absent")
    folder = tmp_path / "eval"
    folder.mkdir()
    _train_file(tmp_path).rename(folder / "squad-v1.1-dev-a.json")  # its articles held out
    held = list(_TRAIN)
    swaps = heldout_swaps(folder, held)
    assert swaps and all(q != e["question"] for e, q in swaps)
    assert heldout_swaps(folder, ["Another_article"]) == []
    assert main([str(DEFAULT_PATH), "--data-dir", str(folder), "--holdout", ",".join(held)]) == 0
    out = capsys.readouterr().out
    assert f"{len(swaps)} held-out questions with a name to swap" in out
    assert re.search(
        r"no-answer wins for \d+\.\d% as written, \d+\.\d% swapped; \d+\.\d% declined at 90% answered", out
    )
