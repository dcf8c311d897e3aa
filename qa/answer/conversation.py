"""Follow-up questions without a language model: earlier turns fill in what a question leaves out.

``resolve`` rewrites a question that leans on the conversation ("Since when?", "Who approves
them?", "And for managers?") into one that stands on its own, from the previous user question
(itself resolved first) and the answer given to it. It works on a shallow parse of English
questions (``Frame``: wh-phrase, auxiliary, subject, verb, the rest) with four rules:

* ``ellipsis``: a bare wh-phrase ("Since when?", "How many?", "By what time?") takes the place of
  the previous question's wh-phrase, whose own nouns stay ("Since when has the United States
  provided security assistance to Ukraine?");
* ``pronoun``: it, its, they, them, their, he, his, she, her and "a new one" become the previous
  answer or a noun phrase of the previous question that agrees with them in number and kind;
* ``fragment``: a noun phrase ("And part-time employees?", "The same for managers?") replaces the
  previous question's phrase that shares a word with it, else its subject; a prepositional phrase
  ("And on longer flights?") replaces the one with the same preposition, or is added;
* ``standalone``: a question with its own wh-word or auxiliary, no reference back and content
  words of its own (at least two, one of them in the index, or three) is a new topic, even after
  "And ...": it gets no history at all. A shorter one (``context``: "What is the deadline?") is
  read as it is, with the previous question added to what retrieval searches.

The reader answers ``Resolved.question``; retrieval searches ``Resolved.query``. A follow-up does not
repeat an answer given since the topic last changed (``Resolved.keep``) unless it asks again
(``repeat``: "What was the amount again?"). What each rule fixed: docs/experiments.md#follow-up-questions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from qa.errors import InputError
from qa.store.lexical import STOPWORDS, tokenize


def _set(words: str) -> frozenset[str]:
    return frozenset(words.split())


STANDALONE, CONTEXT, REPEAT = "standalone", "context", "repeat"
ELLIPSIS, PRONOUN, FRAGMENT = "ellipsis", "pronoun", "fragment"

_WH = _set("what which who whom whose when where why how")
_HOW = _set("much many long often far old big soon quickly large high early late fast frequently")
_BE = _set("is are was were am")
_HAVE = _set("has have had")
_AUX = _BE | _HAVE | _set("be been do does did can could will would shall should may might must")
_PREP = _set("""about above across after against ahead along among around at before behind below beside
    between beyond by during for from in inside into near of off on onto outside over per since
    through till to toward towards under until upon via with within without""")
_DET = _set("the a an this that these those my our your its their his her some any each every all no")
_ADVERBS = _set("""now still also already often currently previously usually ever just really actually
    reportedly recently again then even only exactly typically normally generally""")
_SUBJECT_PRONOUNS = _set("i we you they he she it")
_CONNECTORS = _set("and but so also then ok okay well now")
_PERSON = _set("he him his she her hers")
_THING = _set("it its")
_PLURAL = _set("they them their theirs")
_POSSESSIVE = _set("its their theirs his hers")
# Words that end a predicate after "is"/"has": participles and predicative adjectives.
_PREDICATIVE = _set(
    """open closed valid available due true possible able responsible eligible entitled necessary
    free paid made sent given taken known done seen held built set put kept left met spent told
    sold brought bought won shown chosen written run become begun found"""
)
_REPEAT = re.compile(r"\b(again|repeat|remind me|once more|say that)\b", re.IGNORECASE)
_DIGIT = re.compile(r"\d")
_ACRONYM = re.compile(r"^[A-Z]{2,5}s?$")
_FUNCTION = STOPWORDS | _WH | _HOW | _AUX | _PREP | _DET | _ADVERBS | _CONNECTORS | {"same", "one", "i'm"}


@dataclass(frozen=True)
class Message:
    """One earlier turn of the conversation."""

    role: str  # "user" or "assistant"
    content: str


@dataclass(frozen=True)
class Resolved:
    """A question made to stand on its own: what the reader answers and what retrieval searches."""

    question: str
    query: str
    rule: str  # STANDALONE, CONTEXT, REPEAT, ELLIPSIS, PRONOUN or FRAGMENT
    avoid: tuple[str, ...] = ()  # answers given since the topic changed, not to be repeated

    def keep(self, span: str) -> bool:
        """False when ``span`` repeats an answer to avoid: one's words hold all of the other's
        (a part of an earlier answer was shown with it, so it is a repeat too)."""
        words = set(tokenize(span))
        for answer in self.avoid:
            other = set(tokenize(answer))
            if _norm(span) == _norm(answer) or (words and other and (words <= other or other <= words)):
                return False
        return True


def parse_history(history: Any, max_turns: int, max_chars: int, clean: Callable[[str], str]) -> list[Message]:
    """The conversation as messages (a string is a user turn), checked against the bounds;
    raises InputError saying what is wrong."""
    if history is None:
        return []
    if isinstance(history, (str, bytes)) or not isinstance(history, Sequence):
        raise InputError("history must be a list of previous turns")
    if len(history) > max_turns * 2:
        raise InputError(f"history is too long (at most {max_turns} turns)")
    total = 0
    out = []
    for n, item in enumerate(history, 1):
        if isinstance(item, str):
            role, content = "user", item
        elif isinstance(item, dict) and isinstance(item.get("content"), str):
            role, content = item.get("role", "user"), item["content"]
        else:
            raise InputError("each history item must be a string or {role, content} object")
        if role not in ("user", "assistant"):
            raise InputError(f'history item {n}: role must be "user" or "assistant", not {str(role)[:20]!r}')
        total += len(content)
        if total > max_chars:
            raise InputError(f"history is too long (at most {max_chars} characters)")
        out.append(Message(role, clean(content)))
    return out


@dataclass
class Frame:
    """A question's shallow parse: words in order, split into its parts (all lists of words)."""

    wh: list[str] = field(default_factory=list)  # "How much security assistance", "Since when"
    wh_word: str = ""  # "how much", "when", "which", ... ("" for a yes/no question or a fragment)
    wh_at: int = 0  # where the wh-word is in ``wh`` ("Leaders from which countries": 2)
    head: list[str] = field(default_factory=list)  # the wh-phrase's own nouns ("security assistance")
    aux: list[str] = field(default_factory=list)
    subject: list[str] = field(default_factory=list)
    verb: list[str] = field(default_factory=list)
    rest: list[str] = field(default_factory=list)
    inverted: bool = True  # False when the wh-phrase is the subject ("Who approves them?")
    clause: bool = True  # False for a bare wh-phrase or a fragment

    @property
    def words(self) -> list[str]:
        return [*self.wh, *self.aux, *self.subject, *self.verb, *self.rest]


def _low(word: str) -> str:
    return word.lower().strip("'\"“”‘’()")


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def split_words(text: str) -> list[str]:
    """Words as typed, without closing punctuation ("U.S." and "8:00" stay whole)."""
    out = []
    for w in text.split():
        w = w.rstrip("?!,;")
        if w.endswith(".") and w.count(".") == 1 and len(w) > 2:
            w = w[:-1]
        if w:
            out.append(w)
    return out


def _strip_lead(words: list[str]) -> tuple[list[str], bool]:
    """Drop leading connectors ("and", "what about", "the same for"); True when what is left is a
    fragment by construction ("what about X", "the same for X")."""
    low = [_low(w) for w in words]
    i = 0
    while i < len(low) - 1 and low[i] in _CONNECTORS:
        i += 1
    if low[i : i + 2] in (["what", "about"], ["how", "about"], ["what", "of"]):
        return words[i + 2 :], True
    if low[i : i + 2] == ["the", "same"] or low[i : i + 1] == ["same"]:
        i += 2 if low[i] == "the" else 1
        if i < len(low) and low[i] == "question":
            i += 1
        return words[i:], True
    return words[i:], False


def _participle(low: list[str], p: int) -> bool:
    w = low[p]
    after_det = p > 0 and low[p - 1] in _DET
    return w in _PREDICATIVE or (not after_det and len(w) > 4 and w.endswith(("ed", "ing")))


def parse(words: list[str]) -> Frame:
    """The shallow parse of a question (leading connectors already stripped)."""
    low = [_low(w) for w in words]
    n = len(low)
    at = next((i for i in range(min(4, n)) if low[i] in _WH and (i == 0 or low[i - 1] in _PREP)), None)
    if at is None:
        if n and low[0] in _AUX:  # a yes/no question
            return _inverted(Frame(aux=words[:1]), words[1:], low[0])
        return Frame(rest=list(words), clause=False)
    j = at + 1
    wh_word = low[at]
    if wh_word == "how" and j < n and low[j] in _HOW:
        wh_word = f"how {low[j]}"
        j += 1
    own = j  # the wh-phrase's own words (its head) start here
    if wh_word in ("what", "which", "whose", "how much", "how many"):
        if j + 1 < n and low[j] == "of" and low[j + 1] in _PLURAL | _THING:  # "how many of them"
            j += 2
        elif any(w in _AUX for w in low[j:]):
            while j < n and low[j] not in _AUX and (low[j] not in _PREP or low[j] == "of"):
                j += 1
        elif j < n and low[j] not in _PREP | _DET and not (j + 1 == n and low[j].endswith("ed")):
            j += 1  # "Which countries sent troops?": one noun, then the verb
    frame = Frame(wh=words[:j], wh_word=wh_word, wh_at=at)
    if not any(w in _PLURAL | _THING for w in low[own:j]):  # not "how many of them"
        frame.head = words[own:j]
    clause = [w for w in words[j:] if _low(w) not in _ADVERBS]
    if not clause:
        frame.clause = False
        return frame
    first = _low(clause[0])
    if first in _AUX:
        k = 1
        nxt = _low(clause[k]) if k < len(clause) else ""
        if wh_word in ("who", "what", "which", "whose") and (nxt == "to" or (nxt and _participle([nxt], 0))):
            stop = k + 2 if nxt == "to" else k + 1  # "Who had resisted", "Who has to approve"
            frame.inverted, frame.aux, frame.verb, frame.rest = False, [], clause[:stop], clause[stop:]
            return frame
        frame.aux = clause[:1]
        return _inverted(frame, clause[1:], first)
    frame.inverted, frame.verb, frame.rest = False, clause[:1], clause[1:]
    return frame


def _inverted(frame: Frame, words: list[str], aux: str) -> Frame:
    """Fill subject, verb and rest after an inverted auxiliary ("has the US provided ...")."""
    low = [_low(w) for w in words]
    modal = aux not in _BE | _HAVE
    end = 0
    while end < len(low) and low[end] not in _AUX and low[end] not in _PREP:
        if modal and end > 0 and low[end] in _DET:
            break
        end += 1
    span, more = words[:end], words[end:]
    if modal:
        if span and low[0] in _SUBJECT_PRONOUNS:
            frame.subject, frame.verb, frame.rest = span[:1], span[1:2], span[2:] + more
        elif len(span) >= 2:
            frame.subject, frame.verb, frame.rest = span[:-1], span[-1:], more
        else:
            frame.subject, frame.rest = span, more
            if more and _low(more[0]) in _AUX:  # "must passwords be changed"
                frame.verb, frame.rest = more[:2], more[2:]
        return frame
    p = next((i for i in range(1, len(span)) if _participle(low, i)), None)
    if p is None:
        frame.subject, frame.rest = span, more
    else:
        frame.subject, frame.verb, frame.rest = span[:p], span[p : p + 1], span[p + 1 :] + more
    return frame


def noun_phrases(words: list[str]) -> list[tuple[int, int]]:
    """(start, end) word ranges of noun phrases: an optional determiner, then content words,
    joined by "of" ("the use of the missiles")."""
    low = [_low(w) for w in words]
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(low):
        start = i
        if low[i] in _DET:
            i += 1
        j = i
        while j < len(low) and (low[j] not in _FUNCTION or _ACRONYM.match(words[j])):
            j += 1
            if j + 1 < len(low) and low[j] == "of" and low[j + 1] not in _PLURAL | _THING:
                j += 2 if low[j + 1] in _DET else 1
        if j > i:
            out.append((start, j))
            i = j
        else:
            i = start + 1
    return out


def _plural(words: list[str]) -> bool:
    last = _low(words[-1]) if words else ""
    return len(last) > 3 and last.endswith("s") and not last.endswith(("ss", "us", "is"))


def _quantity(text: str) -> bool:
    return bool(_DIGIT.search(text)) or text.strip()[:1] in ("$", "€", "£")


def content_words(words: Sequence[str]) -> list[str]:
    """The words that carry meaning: not function words; acronyms ("US", "IT") count."""
    return [w for w in words if _low(w) not in _FUNCTION or _ACRONYM.match(w)]


@dataclass
class _Turn:
    """A user turn already resolved, with the answer it got (None: none, or declined)."""

    frame: Frame
    text: str
    answer: str | None
    standalone: bool


def _antecedent(kind: str, prev: _Turn, partitive: bool = False) -> list[str] | None:
    """What a pronoun of ``kind`` ("person", "thing", "plural") in the next question refers to."""
    f, answer = prev.frame, prev.answer
    entity = answer.split() if answer and len(answer.split()) <= 8 and not _quantity(answer) else None
    subject = f.subject if f.subject and _low(f.subject[0]) not in _SUBJECT_PRONOUNS else []
    objects = [f.rest[s:e] for s, e in noun_phrases(f.rest)]
    options: list[list[str]] = []
    if kind == "person":
        if entity and f.wh_word in ("who", "whom", "whose"):
            options.append(entity)
        named = [p for p in (subject, *objects) if any(w[:1].isupper() for w in p)]
        options += [*named, subject]
    elif kind == "thing":
        if entity and f.wh_word in ("what", "which"):
            options.append(entity)
        found = [p for p in (subject, *objects, f.head) if p]
        options += [p for p in found if not _plural(p)] + found
    else:
        if partitive and f.head:
            return f.head
        if entity and f.wh_word in ("what", "which", "who") and (_plural(entity) or "," in " ".join(entity)):
            options.append(entity)
        found = [p for p in (subject, *objects, f.head) if p]
        options += [p for p in found if _plural(p)] + found
    for option in options:
        if option:
            if option is f.head and entity and f.wh_word in ("which", "what", "whose"):
                return entity if _low(option[-1]) in map(_low, entity) else [*entity, *option]
            return option
    return None


def _kind(low: str) -> str | None:
    return "person" if low in _PERSON else "thing" if low in _THING else "plural" if low in _PLURAL else None


def _resolve_pronouns(words: list[str], prev: _Turn) -> list[str] | None:
    """``words`` with their pronouns replaced by what they refer to; None when there are none."""
    low = [_low(w) for w in words]
    out: list[str] = []
    found: dict[tuple[str, bool], list[str] | None] = {}  # one antecedent per kind of pronoun
    changed = False
    i = 0
    while i < len(words):
        w, lw = words[i], low[i]
        nxt = low[i + 1] if i + 1 < len(low) else ""
        partitive = lw == "of" and nxt in _PLURAL | _THING and i > 0 and low[i - 1] in ("many", "much")
        kind = _kind(nxt if partitive else lw)
        if lw == "one" and i > 0 and low[i - 1] in ("a", "new", "this", "that", "which", "another", "the"):
            kind = "thing"
        if kind and (kind, partitive) not in found:
            found[kind, partitive] = _antecedent(kind, prev, partitive)
        ref = found[kind, partitive] if kind else None
        if ref is None:
            out.append(w)
            i += 1
            continue
        changed = True
        if partitive:
            i += 1  # "how many of them" -> "how many days of annual leave"
        elif kind == "thing" and _plural(ref):  # "it", "one": a plural phrase in the singular
            ref = [*ref[:-1], ref[-1][:-1]]
            if lw == "one" and low[i - 1] in ("a", "the") and out:
                out.pop()
            elif lw != "one" and _low(ref[0]) not in _DET:
                ref = ["the", *ref]
        possessive = lw in _POSSESSIVE or (lw == "her" and nxt not in _FUNCTION and nxt != "")
        out += [*ref[:-1], ref[-1] + "'s"] if possessive else ref
        i += 1
    return out if changed else None


def _substitute(phrase: list[str], prev: Frame) -> list[str]:
    """The previous question with ``phrase`` in place of its matching part (a fragment's meaning)."""
    low = [_low(w) for w in prev.words]
    plow = [_low(w) for w in phrase]
    if plow and plow[0] in _PREP and plow[0] not in ("for", "about"):
        if plow[0] in low:  # "And on longer flights?": the phrase with the same preposition
            return [*prev.words[: low.index(plow[0])], *phrase]
        return [*prev.words, *phrase]  # "And in London?"
    if plow and plow[0] in ("for", "about"):
        phrase, plow = phrase[1:], plow[1:]
    stems = {_stem(w) for w in plow if w not in _FUNCTION}
    parts = [prev.wh, prev.aux, prev.subject, prev.verb, prev.rest]
    for n in (2, 4, 0):  # the subject, the objects, the wh-phrase's nouns
        spans = [(0, len(parts[n]))] if n == 2 else noun_phrases(parts[n])
        for s, e in spans:
            if stems & {_stem(_low(w)) for w in parts[n][s:e]}:
                parts[n] = [*parts[n][:s], *phrase, *parts[n][e:]]
                return [w for part in parts for w in part]
    if prev.inverted and prev.subject and _low(prev.subject[0]) not in _SUBJECT_PRONOUNS:
        return [*prev.wh, *prev.aux, *phrase, *prev.verb, *prev.rest]
    return [*prev.words, *phrase]


def _stem(word: str) -> str:
    return word[:-1] if _plural([word]) else word


def _ellipsis(new: Frame, prev: _Turn) -> list[str]:
    """A bare wh-phrase asked of the previous question ("Since when?")."""
    p = prev.frame
    if not p.clause or (not p.wh_word and not p.aux):
        return [*new.wh, *content_words(p.words)]
    wh, carried = list(new.wh), [] if new.head else list(p.head)
    if carried and new.wh_word in ("how much", "how many"):
        wh, carried = wh + carried, []
    entity = prev.answer.split() if prev.answer and not _quantity(prev.answer) else []
    if not p.inverted:  # the answer was the subject: "Who encouraged X?" -> "Why <answer> encouraged X?"
        subject = [*p.wh[: p.wh_at], *entity] if entity else p.head
        return [*wh, *subject, *p.verb, *p.rest]
    subject = p.subject or carried
    if subject is carried:
        carried = []
    tail = entity if p.wh_word in ("what", "which", "who", "whom") else []
    return [*wh, *p.aux, *subject, *p.verb, *carried, *p.rest, *tail]


def resolve(
    question: str,
    history: Sequence[Message],
    known: Callable[[list[str]], int] | None = None,
    declined: str = "",
) -> Resolved:
    """``question`` made to stand on its own, given the conversation so far.

    ``known``: how many of some ``tokenize``d words the index holds (a new topic must name
    something the sources hold). ``declined``: the text of an answer that found nothing, which
    is no answer to refer to.
    """
    turns: list[_Turn] = []
    pending: _Turn | None = None
    for m in history:
        if m.role == "user" and m.content.strip():
            if pending:
                turns.append(pending)
            prev = turns[-1] if turns else None
            r = _resolve_one(m.content, prev, known)
            pending = _Turn(parse(split_words(r.question)), r.question, None, r.rule == STANDALONE)
        elif m.role == "assistant" and pending and m.content.strip() and _norm(m.content) != _norm(declined):
            pending.answer = m.content.strip()
    if pending:
        turns.append(pending)
    result = _resolve_one(question, turns[-1] if turns else None, known)
    if result.rule in (STANDALONE, REPEAT):
        return result
    start = max((i for i, t in enumerate(turns) if t.standalone), default=0)
    avoid = tuple(t.answer for t in turns[start:] if t.answer)
    return Resolved(result.question, result.query, result.rule, avoid)


def _resolve_one(question: str, prev: _Turn | None, known: Callable[[list[str]], int] | None) -> Resolved:
    if prev is None:
        return Resolved(question, question, STANDALONE)
    words, fragment = _strip_lead(split_words(question))
    if not words:
        return Resolved(prev.text, prev.text, REPEAT)
    frame = parse(words)
    resolved = _resolve_pronouns(words, prev)
    if _REPEAT.search(question) and resolved is None:
        return Resolved(question, f"{question} {prev.text}", REPEAT)
    if "same" in map(_low, words) and frame.subject and not fragment:  # "Do managers get the same?"
        text = _sentence(_substitute(frame.subject, prev.frame))
        return Resolved(text, text, FRAGMENT)
    # a long text is no fragment ("And the hotel limit in Paris?") of the last question
    short = len(words) < FOCUS_WORDS or fragment
    if short and (fragment or (not frame.clause and not frame.wh_word)):
        base = resolved or words
        if resolved is not None and any(_low(w) in _POSSESSIVE or _low(w) == "her" for w in words):
            text = _sentence(["What", "is", *base])  # "And its phone extension?"
        else:
            text = _sentence(_substitute(base, prev.frame))
        return Resolved(text, text, FRAGMENT)
    if short and not frame.clause:
        text = _sentence(_ellipsis(frame, prev))
        return Resolved(text, text, ELLIPSIS)
    if resolved is not None:
        text = _sentence(resolved)
        return Resolved(text, text, PRONOUN)
    content = content_words(words)
    found = known(tokenize(" ".join(content))) if known else len(content)
    if len(content) >= 3 or (len(content) >= 2 and found >= 1):
        text = question if words == split_words(question) else _sentence(words)  # without "And"
        return Resolved(text, text, STANDALONE)
    return Resolved(question, f"{question} {prev.text}", CONTEXT)


def _sentence(words: list[str]) -> str:
    text = " ".join(words).rstrip("?.! ")
    return text[:1].upper() + text[1:] + "?"


#: The asker speaking of themselves (case matters: "US" is a country).
_ASKER = re.compile(r"\b(?:I|I'm|I'd|I've|me|my|we|our|us|[Pp]lease)\b")
#: A verb that asks for what follows it: "... I would like to know which ...".
_REQUEST = re.compile(
    r"\b(?:know|wondering|wonder|tell me|find out|learn|understand|explain|confirm|check)\b", re.IGNORECASE
)
_WH_WORD = re.compile(rf"\b(?:{'|'.join(sorted(_WH))})\b", re.IGNORECASE)
_POLITE = re.compile(r"\s*(?:can|could|would|will)\s+you\b", re.IGNORECASE)
#: Questions of fewer words are read as they are.
FOCUS_WORDS = 16
#: At most this many words between the asking verb and the question word ("know, based on
#: the article, which ..."): further on, a comma and "which" more likely open a relative clause.
FOCUS_GAP_WORDS = 8


def focus(question: str) -> str:
    """The question a wordy request asks, for the reader: "I'm preparing a briefing ..., and I
    would like to know, based on the article, which missile system Ukraine will deploy?" ->
    "which missile system Ukraine will deploy?". The reader learned from short questions and
    reads the preamble as part of what is asked, and in a conversation the preamble would look
    like a fragment of the last question. Only a request that speaks in the first person (or
    says please), asks with a verb like "know", and does not itself open with a question word
    is cut: at the last question word that follows that verb, directly or after a comma within
    a few words. The pipeline resolves, searches and reads what is left."""
    words = question.split()
    if len(words) < FOCUS_WORDS:
        return question
    if words[0].lower().strip("\"'(") in _WH | _AUX and not _POLITE.match(question):
        return question
    cut = None
    for wh in _WH_WORD.finditer(question):
        before = question[: wh.start()]
        asks = list(_REQUEST.finditer(before))
        if not asks or not _ASKER.search(before) or len(question[wh.start() :].split()) < 4:
            continue
        gap = before[asks[-1].end() :]
        if not gap.strip() or (
            gap.rstrip().endswith(",") and len(re.findall(r"\w+", gap)) <= FOCUS_GAP_WORDS
        ):
            cut = wh.start()
    return question[cut:] if cut is not None else question
