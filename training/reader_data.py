"""The reader's training examples: SQuAD files to questions, passages and no-answer negatives.

Data: SQuAD v1.1 + v2.0 dev halves in /work/shared/eval (CC BY-SA 4.0), plus any ``--train-file``.
Held-out articles are excluded from training and give the validation questions. Each answerable
question yields its gold paragraph (answer labelled) and its distractors (top BM25 other training
paragraphs, or a ``training.distractors`` file's picks), and optionally its own article's top BM25
paragraph without the answer; v2.0 unanswerable questions are labelled no-answer too.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path
from typing import Any

from qa.answer.span_reader import sha256_file
from qa.store.lexical import import_bm25s

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "eval"  # /work/shared/eval
V1_FILE = "squad-v1.1-dev-a.json"
V2_FILE = "squad-v2.0-dev-a.json"
#: bm25s takes its top-k from JAX where JAX is installed (as on the lent GPU machine); numpy
#: runs the same top-k code on every machine. (Importing bm25s alone starts JAX, which on a GPU
#: reserves most of its memory: ``qa.store.lexical.import_bm25s`` keeps JAX on the CPU.)
BM25_BACKEND = "numpy"
HOLDOUT = [
    "1973_oil_crisis",
    "French_and_Indian_War",
    "Huguenot",
    "Imperialism",
    "Scottish_Parliament",
    "Yuan_dynasty",
]


def load_squad(path: Path) -> list[dict[str, Any]]:
    """The articles (``data``) of a SQuAD JSON file."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)["data"]


def _example(q: dict[str, Any], ctx: str, source: str, **extra: Any) -> dict[str, Any]:
    """A training example from a SQuAD question: its first answer, or none when unanswerable."""
    answer = q["answers"][0] if q.get("answers") and not q.get("is_impossible") else None
    every = dict.fromkeys((a["answer_start"], a["text"]) for a in q["answers"]) if answer else {}
    return {
        "id": q["id"],
        "question": q["question"],
        "context": ctx,
        "answer_start": answer["answer_start"] if answer else None,
        "answer_text": answer["text"] if answer else "",
        "answers": list(every),
        **extra,
        "source": source,
    }


def _no_answer(e: dict[str, Any], suffix: str, context: str, source: str) -> dict[str, Any]:
    """Answerable example ``e``'s question on another passage, labelled no-answer; it joins ``e``'s
    group (``--shared-norm``) under ``e``'s id plus ``suffix``."""
    return {
        "id": e["id"] + suffix,
        "group": e["id"],
        "question": e["question"],
        "context": context,
        "answer_start": None,
        "answer_text": "",
        "answers": [],
        "source": source,
    }


def build_data(
    data_dir: Path,
    holdout: list[str],
    seed: int,
    limit: int | None,
    distractors_per_question: int = 1,
    distractor_file: Path | None = None,
    train_files: list[Path] | None = None,
    article_negatives: float = 0.0,
    swap_share: float = 0.0,
) -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]], list[str]]:
    """Training examples, counts, held-out v1 questions (with golds) and held-out paragraphs.

    Each answerable question gets ``distractors_per_question`` no-answer distractors, the top
    BM25 training paragraphs other than its own; beyond the first, a paragraph that holds one
    of the question's answers word for word is skipped (its no-answer label would be wrong).
    With ``distractor_file`` (``training.distractors``), a question it names takes its first
    picks from there instead (the product's retriever; none if it lists none); any other
    question keeps BM25's.

    ``train_files`` (SQuAD v1.1 JSON, e.g. the train set) add their answerable questions; none of
    their articles may be held out. ``article_negatives`` (0-1) is the share of answerable
    questions that also get a no-answer paragraph **of their own article**: its top BM25
    paragraph that is neither the gold one nor holds one of the answers as whole words (what a
    question looks like when its own paragraph is not indexed but its neighbours are). Above 1
    (up to 3), every question gets its whole part of them (its top paragraphs so chosen) and the
    fraction's share one more: 1.5 gives each question one and half of them two.
    ``swap_share`` (0-1) of the answerable questions with a gold paragraph of a known article
    are asked again with one name swapped for another of their article (``swap_negatives``),
    labelled no-answer on their gold paragraph."""
    v1 = load_squad(data_dir / V1_FILE)
    v2 = load_squad(data_dir / V2_FILE)
    hold = set(holdout)
    rng = random.Random(seed)

    answerable: list[dict[str, Any]] = []
    train_paras: list[str] = []
    heldout_q: list[dict[str, Any]] = []
    heldout_paras: list[str] = []
    v1_ids: set[str] = set()
    v1_keys: set[tuple[str, str]] = set()
    for art in v1:
        for para in art["paragraphs"]:
            ctx = para["context"]
            if art["title"] in hold:
                heldout_paras.append(ctx)
            else:
                train_paras.append(ctx)
            for q in para["qas"]:
                v1_ids.add(q["id"])
                v1_keys.add((q["question"].strip().lower(), ctx))
                golds = [a["text"] for a in q["answers"]]
                if art["title"] in hold:
                    heldout_q.append(
                        {
                            "id": q["id"],
                            "question": q["question"],
                            "context": ctx,
                            "golds": golds,
                            "para": len(heldout_paras) - 1,
                            "title": art["title"],
                        }
                    )
                    continue
                answerable.append(
                    _example(q, ctx, "v1.1", para=len(train_paras) - 1, article=f"dev:{art['title']}")
                )
    for tf in train_files or []:
        extra = load_squad(Path(tf))
        leak = sorted({a["title"] for a in extra} & hold)
        if leak:
            raise SystemExit(f"--train-file {tf} holds held-out articles: {', '.join(leak)}")
        for art in extra:
            for para in art["paragraphs"]:
                train_paras.append(para["context"])
                for q in para["qas"]:
                    if q.get("answers") and not q.get("is_impossible"):
                        answerable.append(
                            _example(
                                q,
                                para["context"],
                                "train",
                                para=len(train_paras) - 1,
                                article=f"{tf}:{art['title']}",
                            )
                        )
    unanswerable: list[dict[str, Any]] = []
    v2_answerable_dup = 0
    for art in v2:
        if art["title"] in hold:
            continue
        for para in art["paragraphs"]:
            ctx = para["context"]
            for q in para["qas"]:
                if q.get("is_impossible"):
                    unanswerable.append(_example(q, ctx, "v2.0-unanswerable"))
                elif q["id"] in v1_ids or (q["question"].strip().lower(), ctx) in v1_keys:
                    v2_answerable_dup += 1
                else:
                    answerable.append(_example(q, ctx, "v2.0", para=None, article=f"dev:{art['title']}"))
    article_paras: dict[str, list[int]] = {}
    for e in answerable:
        e["group"] = e["id"]  # its distractors join this group (``--shared-norm``)
        if e.get("para") is not None:
            article_paras.setdefault(e["article"], []).append(e["para"])
    rng.shuffle(answerable)
    rng.shuffle(unanswerable)
    if limit is not None:
        n_un = round(limit * len(unanswerable) / max(1, len(answerable)))
        answerable = answerable[:limit]
        unanswerable = unanswerable[:n_un]

    # distractors: from the file, else the top BM25 training paragraphs other than the gold one
    mined = read_distractor_file(distractor_file, data_dir, holdout, train_paras) if distractor_file else {}
    rest = [e for e in answerable if e["id"] not in mined] if distractors_per_question else []
    bm25_picks = bm25_distractors(
        [e["question"] for e in rest],
        [e["context"] for e in rest],
        train_paras,
        n=distractors_per_question,
        avoid=[[t for _, t in e["answers"]] for e in rest],
    )
    by_bm25 = {e["id"]: row for e, row in zip(rest, bm25_picks, strict=True)}
    per = distractors_per_question
    picks = [mined[e["id"]][:per] if e["id"] in mined else by_bm25.get(e["id"], []) for e in answerable]
    examples = list(answerable)
    for e, row in zip(answerable, picks, strict=True):
        for j, d in enumerate(row):
            suffix = "#distractor" if j == 0 else f"#distractor{j + 1}"
            examples.append(_no_answer(e, suffix, d, "distractor"))
    chosen: list[dict[str, Any]] = []
    if 0 < article_negatives <= 1:  # one each (the draw as it always was, so old recipes reproduce)
        chosen = rng.sample(answerable, round(article_negatives * len(answerable)))
    elif article_negatives > 1:
        whole, frac = divmod(article_negatives, 1.0)
        chosen = answerable * int(whole) + rng.sample(answerable, round(frac * len(answerable)))
    negatives = same_article_negatives(chosen, train_paras, article_paras)
    for e, d, j in negatives:
        suffix = "#article-negative" if j == 1 else f"#article-negative{j}"
        examples.append(_no_answer(e, suffix, d, "article-negative"))
    swapped: list[tuple[dict[str, Any], str]] = []
    asked: list[dict[str, Any]] = []
    if swap_share > 0:
        swap_rng = random.Random(seed + 1)  # its own draw: the recipes without swaps stay as they were
        asked = swap_rng.sample(answerable, round(swap_share * len(answerable)))
        swapped = swap_negatives(asked, train_paras, article_paras, swap_rng)
    for e, question in swapped:
        examples.append({**_no_answer(e, "#swap", e["context"], "swap-negative"), "question": question})
    examples.extend(unanswerable)
    counts = {
        "answerable_questions": len(answerable),
        "answerable_v1.1": sum(e["source"] == "v1.1" for e in answerable),
        "answerable_v2.0_added": sum(e["source"] == "v2.0" for e in answerable),
        "v2.0_answerable_duplicates_dropped": v2_answerable_dup,
        "distractors": sum(len(row) for row in picks),
        "distractors_per_question": distractors_per_question,
        "answerable_train_file": sum(e["source"] == "train" for e in answerable),
        "article_negatives": len(negatives),
        "article_negatives_asked": len(chosen),
        **({"swap_negatives": len(swapped), "swap_negatives_asked": len(asked)} if swap_share > 0 else {}),
        **({"distractors_from_file": len(answerable) - len(rest)} if distractor_file else {}),
        "unanswerable_v2.0": len(unanswerable),
        "training_examples": len(examples),
        "training_paragraphs": len(train_paras),
        "heldout_questions_v1.1": len(heldout_q),
        "heldout_paragraphs_v1.1": len(heldout_paras),
    }
    return examples, counts, heldout_q, heldout_paras


def answer_pattern(answer: str) -> re.Pattern[str]:
    """Where ``answer`` stands in a lower-cased text as whole words: "2" is in "won 2 titles", not
    in "2015"; an end that is not a word character ("U.S.", "$5") needs no boundary there."""
    a = answer.strip().lower()
    head = r"(?<!\w)" if re.match(r"\w", a) else ""
    tail = r"(?!\w)" if re.search(r"\w$", a) else ""
    return re.compile(head + re.escape(a) + tail)


def same_article_negatives(
    chosen: list[dict[str, Any]], paras: list[str], article_paras: dict[str, list[int]], depth: int = 8
) -> list[tuple[dict[str, Any], str, int]]:
    """For each chosen answerable example (with ``article`` and ``para``, its index into
    ``paras``; ``article_paras`` lists each article's paragraph indices), the top BM25
    paragraph of its own article that is not its gold paragraph and holds none of its answers
    as whole words; examples whose article offers none are left out. An example chosen k times
    gets its top k such paragraphs, all different (fewer where the article's first ``depth``
    offer fewer), each with its rank among them (1 for the best). Question ids must be unique
    (``build_data``'s are)."""
    bm25s = import_bm25s()

    wanted: dict[str, int] = {}
    by_article: dict[str, list[dict[str, Any]]] = {}
    for e in chosen:
        if e.get("article") and e.get("para") is not None:
            wanted[e["id"]] = wanted.get(e["id"], 0) + 1
            if wanted[e["id"]] == 1:
                by_article.setdefault(e["article"], []).append(e)
    out: list[tuple[dict[str, Any], str, int]] = []
    for art, exs in sorted(by_article.items()):
        members = sorted(set(article_paras.get(art, [])) | {e["para"] for e in exs})
        if len(members) < 2:
            continue
        texts = [paras[i] for i in members]
        retriever = bm25s.BM25()
        retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
        k = min(depth, len(texts))
        docs, _ = retriever.retrieve(
            bm25s.tokenize([e["question"] for e in exs], stopwords="en", show_progress=False),
            k=k,
            show_progress=False,
            backend_selection=BM25_BACKEND,
        )
        for e, row in zip(exs, docs, strict=True):
            bad = [answer_pattern(t) for _, t in e["answers"] if t.strip()]
            need, given = wanted[e["id"]], set()
            for idx in row:
                j = members[int(idx)]
                text = paras[j]
                if j == e["para"] or text == e["context"] or text in given:
                    continue
                if any(b.search(text.lower()) for b in bad):
                    continue
                given.add(text)
                out.append((e, text, len(given)))
                if len(given) == need:
                    break
    return out


def paragraph_key(text: str) -> str:
    """How a distractor file names a paragraph: the sha1 of its text."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def read_distractor_file(
    path: Path, data_dir: Path, holdout: list[str], train_paras: list[str]
) -> dict[str, list[str]]:
    """Question id -> distractor paragraphs, from a ``training.distractors`` file made for this
    v1.1 file and these held-out articles (else SystemExit saying which differs)."""
    try:
        mined = json.loads(Path(path).read_text(encoding="utf-8"))
        picks = mined["picks"]
        if not all(isinstance(row, list) and all(isinstance(k, str) for k in row) for row in picks.values()):
            raise ValueError("its picks are not lists of paragraph keys")
        made_for = mined.get("holdout")
        if not isinstance(made_for, list) or not all(isinstance(t, str) for t in made_for):
            raise ValueError("its holdout is not a list of titles")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SystemExit(f"--distractor-file {path}: not a training.distractors file ({exc})") from None
    if sorted(made_for) != sorted(holdout):
        raise SystemExit(
            f"--distractor-file {path} was made holding out {mined.get('holdout')}, not {sorted(holdout)}"
        )
    sha = sha256_file(data_dir / V1_FILE)
    if mined.get("file_sha256") != sha:
        raise SystemExit(f"--distractor-file {path} was made from another {V1_FILE} (sha256 differs)")
    by_key = {paragraph_key(t): t for t in train_paras}
    unknown = {k for row in picks.values() for k in row} - by_key.keys()
    if unknown:  # a held-out or unknown paragraph would leak
        raise SystemExit(f"--distractor-file {path} names {len(unknown)} non-training paragraphs")
    return {qid: [by_key[k] for k in row] for qid, row in picks.items()}


def bm25_distractors(
    questions: list[str],
    golds: list[str],
    corpus: list[str],
    n: int = 1,
    avoid: list[list[str]] | None = None,
) -> list[list[str]]:
    """Per question, up to ``n`` of its top BM25 paragraphs of ``corpus`` other than its gold one.
    The first pick is the top one; later picks also skip a paragraph that contains one of the
    question's ``avoid`` strings (case-insensitive)."""
    bm25s = import_bm25s()

    if not questions:
        return []
    uniq = list(dict.fromkeys(corpus))
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(uniq, stopwords="en", show_progress=False), show_progress=False)
    k = min(n + 4, len(uniq))
    docs, _ = retriever.retrieve(
        bm25s.tokenize(questions, stopwords="en", show_progress=False),
        k=k,
        show_progress=False,
        backend_selection=BM25_BACKEND,
    )
    out: list[list[str]] = []
    for i, (row, gold) in enumerate(zip(docs, golds, strict=True)):
        bad = [a.lower() for a in (avoid[i] if avoid else []) if a.strip()]
        picks: list[str] = []
        for idx in row:
            para = uniq[int(idx)]
            if para == gold or (picks and any(a in para.lower() for a in bad)):
                continue
            picks.append(para)
            if len(picks) == n:
                break
        out.append(picks)
    return out


#: A name: capitalised words, joined by a few lower-case linking words ("Treaty of Paris",
#: "Edict of Nantes"), without a leading "The" or a trailing "'s"; or a year.
_NAME = re.compile(
    r"\b(?!The\s)[A-Z][\w'’-]*\w(?:(?:\s+(?:of|the|de|du|la|von|van|and|for|on|in)){0,2}\s+[A-Z][\w'’-]*\w)*"
    r"|\b1\d{3}\b|\b20\d{2}\b"
)
_YEAR = re.compile(r"\d{4}")
_POSSESSIVE = re.compile(r"['’]s?$")
#: Capitalised words that open a sentence and are no part of a name after them ("In Beichuan County").
_OPENERS = re.compile(
    r"^(?:In|On|At|From|During|After|Before|When|While|Although|By|For|As|With|Since|Under|Between|A|An"
    r"|This|These|Its|His|Her|Their|If|But|And|Of|To)\s+"
)
_OPENS = re.compile(r"(?:^|[.!?:;\"“(]\s*|\n)$")


def names_in(text: str) -> list[tuple[int, int, str]]:
    """The names (``_NAME``) in ``text`` as (start, end, name). A one-word name that opens a
    sentence is left out: every first word is capitalised ("When", "While", "Consider")."""
    out = []
    for m in _NAME.finditer(text):
        name = _POSSESSIVE.sub("", m.group())
        start = m.start()
        if (opener := _OPENERS.match(name)) is not None:
            name, start = name[opener.end() :], start + opener.end()
        if " " not in name and not _YEAR.fullmatch(name) and _OPENS.search(text[:start]):
            continue
        out.append((start, start + len(name), name))
    return out


def swap_negatives(
    chosen: list[dict[str, Any]], paras: list[str], article_paras: dict[str, list[int]], rng: random.Random
) -> list[tuple[dict[str, Any], str]]:
    """For each chosen answerable example, its question with one name (``_NAME``: capitalised
    words or a year) that its gold paragraph holds swapped for a name of the same kind from
    another paragraph of its own article that the gold paragraph does not hold: "When did
    Kublai move the capital?" becomes "When did Ögedei move the capital?". Asked of the gold
    paragraph, the changed question has no answer there (the "entity swap" of SQuAD 2.0's
    unanswerable questions, and what a question looks like to the reader when the paragraph
    it needs is not indexed but a neighbour that shares most of its words is). A name that is
    part of an answer, or one that holds or is held by its replacement ("Kublai" and "Kublai
    Khan"), is never swapped; examples with no such pair are left out. Returns (example, the
    changed question)."""
    pools: dict[str, list[str]] = {}
    for art, members in article_paras.items():
        seen: dict[str, None] = {}
        for i in sorted(set(members)):
            for _, _, name in names_in(paras[i]):
                seen.setdefault(name, None)
        pools[art] = list(seen)
    out: list[tuple[dict[str, Any], str]] = []
    for e in chosen:
        pool = pools.get(e.get("article") or "", [])
        ctx, q = e["context"], e["question"]
        low = ctx.lower()
        answers = [t.lower() for _, t in e["answers"] if t.strip()]
        slots = [
            (s, t, name)
            for s, t, name in names_in(q)
            if answer_pattern(name).search(low)
            and not any(name.lower() in a or a in name.lower() for a in answers)
        ]
        rng.shuffle(slots)
        for s, t, name in slots:
            if (swap := _replacement(name, pool, low, q.lower(), rng)) is not None:
                out.append((e, q[:s] + swap + q[t:]))
                break
    return out


def _replacement(name: str, pool: list[str], context: str, question: str, rng: random.Random) -> str | None:
    """A random name of ``pool`` (at most 200 tried) to stand for ``name``: a year for a year, as
    many words, neither holding the other, and in neither the lower-cased ``context`` nor
    ``question`` (as substrings: stricter than whole words, so it never occurs there)."""
    year, lname = bool(_YEAR.fullmatch(name)), name.lower()
    for n in rng.sample(pool, min(200, len(pool))):
        ln = n.lower()
        if (
            bool(_YEAR.fullmatch(n)) == year
            and n.count(" ") == name.count(" ")
            and ln not in lname
            and lname not in ln
            and ln not in context
            and ln not in question
        ):
            return n
    return None
