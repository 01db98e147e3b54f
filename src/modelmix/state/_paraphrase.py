"""The semantic cache's second stage: may a cached answer to prompt ``a`` answer ``b``?

Embeddings place "enable the firewall" and "disable the firewall" closer (cosine 0.97
with multilingual-e5-small) than many true paraphrases, so similarity alone cannot keep
false hits under 1% (benchmarks/cache/RESULTS.md). :func:`differences` compares the two
prompts word by word and names every reason they may ask different things; the cache
serves a neighbour only when it names none. It is deliberately strict: a paraphrase it
refuses is a miss (one upstream call), a pair it lets through is a wrong answer.

Refused when the prompts differ in:

* ``number``: the numbers they contain, in order (digits, number words, ordinals), and
  their operators and signs (+, -, =, %, $...);
* ``negation``: how many negations (not, no, never, without, n't...);
* ``polarity``: a polarity word both use with opposite poles (on/off, before/after,
  more/less, best/worst, enable/disable, all/some...);
* ``wh``: their question words (who, when, where, why, which...);
* ``name``: a name or identifier of one that the other lacks, or their order
  (capitalised words, ALL-CAPS, code identifiers, paths, versions, quoted strings);
* ``anchor``: units, currencies, dates, months, weekdays, languages, in order;
* ``content``: any content word (stemmed, synonyms folded) the other lacks: a swapped
  object ("reverse a string" / "a list") or an added constraint ("brown rice");
* ``relation``: the words on each side of a direction word (to, from, in, than, into,
  vs): "miles to km" / "km to miles";
* ``order``: two words (or persons) trading places around a third: "federer beat nadal"
  / "nadal beat federer", "he owes me" / "I owe him";
* ``literal``: the text after a final ": " ("Fix the grammar: their going..."), word for
  word.

English word lists; other languages keep only the language-neutral checks (numbers,
names, identifiers) plus the content check, which refuses nearly every reworded pair.

Example::

    differences("How do I enable the firewall?", "How can I turn on the firewall?")  # ()
    differences("enable the firewall", "disable the firewall")  # ("polarity", "content")
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

__all__ = ["differences"]

_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'"})  # typographic apostrophes
_CONTRACTIONS = tuple((re.compile(p), r) for p, r in (
    (r"(?i)\b(can)'?t\b", r"\1 not"), (r"(?i)\bwon'?t\b", "will not"),
    (r"(?i)\bshan'?t\b", "shall not"), (r"(?i)n't\b", " not"),
    (r"(?i)\bcannot\b", "can not"), (r"(?i)'(re|ve|ll|d|m|s)\b", " ")))
#: Tokens: identifiers with inner punctuation first, then words and numbers.
_TOKEN = re.compile(
    r"[\"“'`]([^\"”'`]{1,80})[\"”'`]"          # a quoted string (kept whole)
    r"|https?://\S+|[\w.+-]+@[\w-]+\.[\w.]+"     # URL, e-mail
    r"|(?:[A-Za-z_]\w*)?(?:[./\\:]{1,2}[\w-]+)+[/\\]?"  # paths, dotted names, a::b
    r"|\d+(?:[.,:]\d+)*(?:st|nd|rd|th)?"          # numbers, times, ordinals
    r"|[^\W\d_]+(?:[-_][^\W_]+)*"                 # words, hyphenated, snake_case
    r"|[-+*/=<>^#%$€£¥°]")                        # operators, currency and other signs
_SENTENCE_END = frozenset(".!?:;\n")

_STOP = frozenset("""
a an the this that these those it its it's there here i me my mine myself we us our you your
yours he him his she her they them their one ones some any each every all both several
always sometimes usually often mostly generally rarely seldom
is am are was were be been being do does did doing done have has had having get got
can could would will shall should may might must
of for with at by about as onto via per
and or but so if then than also too very just really quite much many lot lots
please kindly thanks thank hi hello hey
what which how way ways method approach best good
tell explain describe show give let know want need like help assist list provide share
define definition possible mean means meaning make sure i'd own
step steps guide tutorial instruction instructions procedure tip tips
""".split()) - {"than"}

#: Words whose change alters the question asked.
_WH = frozenset({"who", "whom", "whose", "when", "where", "why", "whether"})

_NEGATIONS = frozenset({"not", "no", "never", "none", "nothing", "nobody", "nowhere",
                        "neither", "nor", "without", "non"})

#: Multi-word phrases folded into one token before comparison.
_PHRASES: tuple[tuple[tuple[str, ...], str], ...] = tuple(
    (tuple(k.split()), v) for k, v in {
        "turn on": "enable", "switch on": "enable", "power on": "enable",
        "turn off": "disable", "switch off": "disable", "power off": "disable",
        "shut down": "shutdown", "shut off": "disable", "set up": "setup",
        "log in": "login", "sign in": "login", "log on": "login",
        "log out": "logout", "sign out": "logout", "log off": "logout",
        "sign up": "register", "come up with": "suggest", "find out": "learn",
        "figure out": "learn", "look up": "find", "a couple of": "2", "a pair of": "2",
        "a dozen": "12", "in order to": "to", "so that": "to", "is it possible to": "can",
        "what is the best way to": "how to", "what's the best way to": "how to",
        "what is the way to": "how to", "the steps to": "how to", "steps to": "how to",
        "more than": "over", "less than": "under", "fewer than": "under",
        "greater than": "over", "at least": "min", "at most": "max",
        "as well as": "and", "instead of": "not", "rather than": "not",
        "kind of": "type", "sort of": "type", "type of": "type",
        "pros and cons": "proscons", "up to date": "current", "up-to-date": "current",
    }.items())

#: Synonyms folded to one word (only where the two mean the same in any question).
_SYNONYMS: dict[str, str] = {
    **dict.fromkeys(("activate", "enable"), "enable"),
    **dict.fromkeys(("deactivate", "disable"), "disable"),
    **dict.fromkeys(("create", "generate", "produce", "compose", "draft", "write"), "write"),
    **dict.fromkeys(("build", "construct"), "build"),
    **dict.fromkeys(("fix", "repair", "resolve", "solve", "troubleshoot"), "fix"),
    **dict.fromkeys(("big", "large", "huge"), "large"),
    **dict.fromkeys(("small", "little", "tiny"), "small"),
    **dict.fromkeys(("quick", "fast", "rapid", "speedy"), "fast"),
    **dict.fromkeys(("begin", "start", "commence"), "start"),
    **dict.fromkeys(("end", "finish", "complete"), "finish"),
    **dict.fromkeys(("buy", "purchase"), "buy"),
    **dict.fromkeys(("car", "automobile", "vehicle"), "car"),
    **dict.fromkeys(("doctor", "physician"), "doctor"),
    **dict.fromkeys(("film", "movie"), "movie"),
    **dict.fromkeys(("summary", "summarize", "summarise", "recap", "overview"), "summary"),
    **dict.fromkeys(("differ", "difference", "different", "distinguish", "compare",
                     "comparison", "versus", "vs"), "difference"),
    **dict.fromkeys(("use", "utilize", "utilise", "employ"), "use"),
    **dict.fromkeys(("remove", "delete", "erase"), "remove"),
    **dict.fromkeys(("find", "locate", "search"), "find"),
    **dict.fromkeys(("learn", "study"), "learn"),
    **dict.fromkeys(("error", "bug", "issue", "problem"), "error"),
    **dict.fromkeys(("example", "sample", "instance"), "example"),
    **dict.fromkeys(("idea", "suggestion", "suggest", "recommend", "recommendation",
                     "advice"), "suggest"),
    **dict.fromkeys(("cause", "reason"), "cause"),
    **dict.fromkeys(("benefit", "advantage"), "advantage"),
    **dict.fromkeys(("drawback", "disadvantage", "downside"), "disadvantage"),
    **dict.fromkeys(("program", "code", "script"), "code"),
    **dict.fromkeys(("function", "method"), "function"),
    **dict.fromkeys(("short", "brief", "concise"), "short"),
    **dict.fromkeys(("author", "write", "wrote", "written"), "write"),
    **dict.fromkeys(("day", "daily"), "day"), **dict.fromkeys(("week", "weekly"), "week"),
    **dict.fromkeys(("month", "monthly"), "month"),
    **dict.fromkeys(("year", "yearly", "annual", "annually"), "year"),
    **dict.fromkeys(("safe", "secure"), "safe"),
    **dict.fromkeys(("healthy", "nutritious"), "healthy"),
    **dict.fromkeys(("kid", "child", "children"), "child"),
    **dict.fromkeys(("simple", "easy", "basic"), "simple"),
    **dict.fromkeys(("main", "key", "primary", "principal", "major"), "main"),
    **dict.fromkeys(("important", "significant"), "important"),
    **dict.fromkeys(("job", "work", "occupation"), "job"),
    **dict.fromkeys(("shorten", "condense"), "shorten"),
}

#: Polarity concepts: word -> (concept, pole). Opposite poles of one concept in the two
#: prompts refuse a hit; :data:`_STOP` words among them count here though they are no
#: content words.
_POLES: dict[str, tuple[str, int]] = {}
for _concept, _plus, _minus in (
    ("onoff", "on enable start open connect lock install mount load attach plug include "
     "allow accept approve grant permit subscribe login register import upload show expand "
     "encrypt compress arm hire join enter", "off disable stop close disconnect unlock "
     "uninstall unmount unload detach unplug exclude deny reject refuse revoke forbid "
     "block unsubscribe logout unregister export download hide collapse decrypt decompress "
     "disarm fire leave exit"),
    ("inout", "in inside inner input inbound incoming internal into", "out outside outer "
     "output outbound outgoing external"),
    ("updown", "up upper upward upwards upgrade raise rise ascend ascending increase "
     "inflate grow gain climb", "down lower downward downwards downgrade drop fall descend "
     "descending decrease reduce deflate shrink lose decline"),
    ("time", "before earlier prior previous past pre ago yesterday early", "after later "
     "next following future post tomorrow late"),
    ("vertical", "above over higher high top north", "below under lower low bottom south"),
    ("side", "left west", "right east"),
    ("amount", "more most many much plus maximum max many extra additional", "less least "
     "few fewer minus minimum min little"),
    ("quality", "best better good great positive right correct true pro pros",
     "worst worse bad poor negative wrong incorrect false con cons"),
    ("size", "large larger largest long longer longest tall taller wide heavy thick",
     "small smaller smallest short shorter shortest narrow light thin"),
    ("speed", "fast faster fastest quickly", "slow slower slowest slowly"),
    ("temp", "hot warm heat heating warmer hotter", "cold cool cooling colder cooler"),
    ("price", "expensive costly pricey", "cheap cheaper cheapest inexpensive affordable"),
    ("trade", "buy buying bought long", "sell selling sold short"),
    ("send", "send sending sent give lend push", "receive receiving received take borrow "
     "pull"),
    ("sign", "yes plus positive", "no minus negative"),
    ("age", "old older oldest", "new newer newest young younger youngest"),
    ("sex", "male man men boy boys husband father son he his him",
     "female woman women girl girls wife mother daughter she her"),
    ("wet", "wet humid", "dry arid"),
    ("light", "light bright day", "dark dim night"),
    ("first", "first beginning start", "last end final"),
    ("win", "win won winning victory", "lose lost losing defeat"),
    ("legal", "legal lawful", "illegal unlawful"),
    ("love", "love like enjoy", "hate dislike"),
    ("sort", "ascending asc", "descending desc"),
):
    for _pole, _words in ((1, _plus), (-1, _minus)):
        for _w in _words.split():
            _POLES.setdefault(_w, (_concept, _pole))
#: Quantifiers: "all birds" / "some birds" are opposite poles of one concept.
for _pole, _words in ((2, "all every each always everyone everybody everything everywhere"),
                      (1, "usually often mostly generally"),
                      (0, "some sometimes someone somebody something somewhere several"),
                      (-1, "rarely seldom few")):
    for _w in _words.split():
        _POLES.setdefault(_w, ("quantifier", _pole))

#: Polarity words that are function words: compared by pole, never as content words.
_FUNCTION_POLES = frozenset("""
on off in out inside outside up down before after above below over under more most less
least few fewer plus minus yes early late next previous prior ago upward downward
""".split())

#: Words whose change, order or presence changes a question's answer like a number does.
_ANCHORS = frozenset("""
mm cm m meter meters metre metres km kilometer kilometers kilometre kilometres mile miles
inch inches foot feet ft yard yards mi kg kilogram kilograms gram grams g mg lb lbs pound
pounds ounce ounces oz ton tons tonne tonnes liter liters litre litres ml gallon gallons
quart cup cups tablespoon tablespoons teaspoon teaspoons celsius fahrenheit kelvin
c f k degree degrees usd eur gbp jpy cny inr chf cad aud dollar dollars euro euros yen
yuan rupee rupees franc francs pesos peso btc bitcoin bitcoins percent %
second seconds minute minutes hour hours day days week weeks month months year years
daily weekly monthly yearly annual annually
decade decades century centuries ms sec secs min mins hr hrs
byte bytes kb mb gb tb pb kib mib gib tib bit bits kbps mbps gbps hz khz mhz ghz
watt watts kw kwh volt volts amp amps mph kph
am pm utc gmt est pst cet
january february march april june july august september october november december
jan feb mar apr jun jul aug sep sept oct nov dec
monday tuesday wednesday thursday friday saturday sunday weekend weekday
today tomorrow yesterday tonight morning afternoon evening noon midnight
spring summer autumn fall winter
english spanish french german italian portuguese dutch russian chinese mandarin cantonese
japanese korean arabic hindi bengali urdu turkish polish swedish norwegian danish finnish
greek hebrew latin thai vietnamese indonesian malay swahili czech hungarian romanian
ukrainian persian
python javascript typescript java kotlin swift rust golang c++ c# php ruby perl scala
haskell sql bash powershell html css json yaml xml csv markdown excel r matlab lua dart
elixir erlang clojure fortran cobol assembly react vue angular svelte django flask
rails spring node nodejs linux windows macos ios android ubuntu debian
""".split())

#: Pronouns, by the person they name, for the order check ("he owes me" / "I owe him").
_PERSONS = {
    **dict.fromkeys(("i", "me", "my", "mine", "myself"), "@self"),
    **dict.fromkeys(("we", "us", "our", "ours"), "@we"),
    **dict.fromkeys(("you", "your", "yours"), "@you"),
    **dict.fromkeys(("he", "him", "his", "himself"), "@male"),
    **dict.fromkeys(("she", "her", "hers", "herself"), "@female"),
    **dict.fromkeys(("they", "them", "their", "theirs"), "@they"),
}

#: Words that relate what stands before them to what follows.
_DIRECTIONAL = frozenset({"to", "from", "in", "into", "than", "vs", "versus", "over", "against",
                          "toward", "towards", "onto", "per", "between", "instead"})

_NUMBER_WORDS = {
    **{w: i for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen "
        "fourteen fifteen sixteen seventeen eighteen nineteen".split())},
    **{w: 10 * (i + 2) for i, w in enumerate(
        "twenty thirty forty fifty sixty seventy eighty ninety".split())},
    "dozen": 12, "half": 0.5, "quarter": 0.25, "twice": 2, "once": 1, "thrice": 3,
    "double": 2, "triple": 3, "single": 1, "pair": 2, "couple": 2, "none": 0,
}
_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000,
           "billion": 1_000_000_000, "trillion": 1_000_000_000_000, "k": 1_000}
_ORDINALS = {w: i + 1 for i, w in enumerate(
    "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth"
    .split())}

_SUFFIXES = ("izations", "ization", "ational", "fulness", "ousness", "iveness", "ations",
             "ation", "ements", "ement", "ments", "ment", "ness", "ingly", "edly", "ings",
             "ing", "ities", "ity", "ies", "ied", "ers", "er", "est", "ed", "es", "ly", "s",
             "ize", "ise", "y", "e")


def _stem(word: str) -> str:
    """A light suffix-stripping stem: inflections and common derivations of one word
    meet ("reverses" / "reversed" / "reverse"; "summary" / "summarize")."""
    if len(word) <= 3 or not word.isalpha():
        return word
    for _ in range(2):
        for suffix in _SUFFIXES:
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                word = word[: -len(suffix)]
                if suffix in ("ies", "ied"):
                    word += "y"
                break
        else:
            break
    return word


_SIGNS = frozenset("-+*/=<>^#%$€£¥°")

_STEM_SYNONYMS = {_stem(k): _stem(v) for k, v in _SYNONYMS.items()}


def _canonical(word: str) -> str:
    """``word``'s stem, synonyms folded to one."""
    stem = _stem(word)
    return _STEM_SYNONYMS.get(stem, stem)


@dataclass(slots=True)
class _Token:
    text: str  # as written
    low: str  # lower-cased, folded
    starts_sentence: bool
    quoted: bool = False


@dataclass(slots=True)
class _Profile:
    numbers: list[float]
    signs: list[str]  # operators and signs, in order
    negations: int
    poles: dict[str, set[int]]
    wh: set[str]
    names: list[str]
    anchors: list[str]
    content: Counter[str]
    relations: dict[str, set[tuple[str, str]]]
    words: set[str]
    order: list[str]  # content stems and persons, in order
    literal: str | None  # what follows the last ": " (text an instruction works on)


def _tokens(text: str) -> list[_Token]:
    """Tokens of ``text`` with their written and folded forms."""
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    for pattern, repl in _CONTRACTIONS:
        text = pattern.sub(repl, text)
    out: list[_Token] = []
    start = True
    pos = 0
    for match in _TOKEN.finditer(text):
        gap = text[pos:match.start()]
        if any(ch in _SENTENCE_END for ch in gap.replace("...", "")):
            start = True
        pos = match.end()
        quoted = match.group(1) is not None
        raw = match.group(1) if quoted else match.group(0)
        out.append(_Token(raw, raw.lower().strip(".,:") or raw, start, quoted))
        start = False
    return out


def _phrases(words: list[str]) -> list[str]:
    """``words`` with :data:`_PHRASES` folded (longest first)."""
    out: list[str] = []
    i = 0
    while i < len(words):
        for phrase, repl in _PHRASES:
            n = len(phrase)
            if tuple(words[i:i + n]) == phrase:
                out.extend(repl.split())
                i += n
                break
        else:
            out.append(words[i])
            i += 1
    return out


def _number(word: str) -> float | None:
    cleaned = word.replace(",", "")
    for suffix in ("st", "nd", "rd", "th"):
        if cleaned.endswith(suffix) and cleaned[: -len(suffix)].isdigit():
            return float(cleaned[: -len(suffix)])
    try:
        return float(cleaned)
    except ValueError:
        pass
    if ":" in word and all(p.isdigit() for p in word.split(":")):  # 10:30
        hours, _, minutes = word.partition(":")
        return float(hours) + float(minutes.split(":")[0]) / 100
    if word in _ORDINALS:
        return float(_ORDINALS[word])
    value = _NUMBER_WORDS.get(word)
    return None if value is None else float(value)


def _numbers(words: list[str]) -> list[float]:
    """Every number in ``words``, in order; number words are combined ("twenty five",
    "3 thousand")."""
    out: list[float] = []
    current: float | None = None
    for word in words:
        value = _number(word)
        scale = _SCALES.get(word)
        if scale is not None and current is not None:
            current *= scale
            continue
        if value is not None and word.isalpha() and current is not None and value < 10 \
                and current >= 20 and current % 10 == 0:
            current += value  # "twenty five"
            continue
        if current is not None:
            out.append(current)
            current = None
        if value is not None:
            current = value
    if current is not None:
        out.append(current)
    return out


def _is_name(token: _Token) -> bool:
    """A name or identifier as written: capitalised (not a sentence's first word: the
    content check compares those), ALL-CAPS, mixed case, or with digits, dots, slashes."""
    raw = token.text
    if token.quoted:
        return True
    if " " in raw or (len(raw) > 1 and not raw.isalpha() and not raw.isdigit()
                      and any(c.isalpha() for c in raw)):
        return True  # quoted text, identifiers, paths, versions, e-mail
    if not raw[:1].isupper() or raw == "I":
        return False
    if raw.isupper() and len(raw) > 1:
        return True
    if any(c.isupper() for c in raw[1:]):
        return True  # iPhone, JavaScript, McDonald
    return not token.starts_sentence


def _profile(text: str) -> _Profile:
    tokens = _tokens(text)
    words = _phrases([t.low for t in tokens])
    names = [t.low for t in tokens if _is_name(t)]
    negations = sum(w in _NEGATIONS for w in words)
    poles: dict[str, set[int]] = {}
    content: Counter[str] = Counter()
    anchors: list[str] = []
    kept: list[str | None] = []  # content stems in order, None for a directional word
    directional: list[str] = []
    order: list[str] = []
    for word in words:
        if word in _PERSONS:
            order.append(_PERSONS[word])
        if word in _POLES:
            concept, pole = _POLES[word]
            poles.setdefault(concept, set()).add(pole)
        if word in _ANCHORS:
            anchors.append(_canonical(word))
        if word in _DIRECTIONAL:
            kept.append(None)
            directional.append(word)
            continue
        if (word in _STOP or word in _NEGATIONS or word in _WH or word in _FUNCTION_POLES
                or _number(word) is not None or not any(c.isalnum() for c in word)):
            continue
        stem = _canonical(word)
        content[stem] += 1
        kept.append(stem)
        order.append(stem)
    return _Profile(
        numbers=_numbers(words), signs=[w for w in words if w in _SIGNS],
        negations=negations, poles=poles,
        wh={w for w in words if w in _WH}, names=names, anchors=anchors, content=content,
        relations=_relations(kept, directional), words=set(words), order=order,
        literal=_literal(text))


def _literal(text: str) -> str | None:
    """The text after the last colon followed by a space, folded, if any: "Fix the
    grammar: their going..." works on it, so it must match word for word."""
    _, colon, rest = text.rpartition(": ")
    if not colon or not rest.strip():
        return None
    return " ".join(t.low for t in _tokens(rest))


def _relations(kept: list[str | None], directional: list[str]) -> dict[str, set[tuple[str, str]]]:
    """For each directional word: the content stems right before and after it."""
    out: dict[str, set[tuple[str, str]]] = {}
    marks = iter(directional)
    for i, stem in enumerate(kept):
        if stem is not None:
            continue
        word = next(marks)
        before = next((s for s in reversed(kept[:i]) if s is not None), "")
        after = next((s for s in kept[i + 1:] if s is not None), "")
        if before and after:  # "how to cook": no relation between two things
            out.setdefault(word, set()).add((before, after))
    return out


def _names_differ(a: _Profile, b: _Profile) -> bool:
    """A name of one missing from the other's words, or shared names in another order."""
    for names, other in ((a.names, b), (b.names, a)):
        for name in names:
            if name not in other.words and name not in other.names:
                return True
    shared_a = [n for n in a.names if n in b.names]
    shared_b = [n for n in b.names if n in a.names]
    return shared_a != shared_b


def _swapped(a: _Profile, b: _Profile) -> bool:
    """Two words that trade places around a third both keep between them ("federer beat
    nadal" / "nadal beat federer", "he owes me" / "I owe him"); a word moved without
    crossing another is not ("eggs raw" / "raw eggs", "the GDP of Japan" / "Japan's GDP")."""
    pos_a: dict[str, int] = {}
    pos_b: dict[str, int] = {}
    for order, pos in ((a.order, pos_a), (b.order, pos_b)):
        for i, word in enumerate(order):
            pos.setdefault(word, i)  # first place of each word
    words = sorted(pos_a.keys() & pos_b.keys(), key=pos_a.__getitem__)
    for i, x in enumerate(words):
        for z in words[i + 1:]:
            for y in words[words.index(z) + 1:]:
                if pos_b[y] < pos_b[z] < pos_b[x]:
                    return True
    return False


def _poles_differ(a: _Profile, b: _Profile) -> bool:
    return any(a.poles[c] != b.poles[c] for c in a.poles.keys() & b.poles.keys())


def _relations_differ(a: _Profile, b: _Profile) -> bool:
    return any(a.relations[w] != b.relations[w]
               for w in a.relations.keys() & b.relations.keys())


def differences(a: str, b: str) -> tuple[str, ...]:
    """Why a cached answer to prompt ``a`` may not answer prompt ``b``: the names of the
    checks that refuse it (see the module docstring), empty when none does."""
    if a == b:
        return ()
    pa, pb = _profile(a), _profile(b)
    checks = (
        ("number", pa.numbers != pb.numbers or pa.signs != pb.signs),
        ("negation", pa.negations != pb.negations),
        ("polarity", _poles_differ(pa, pb)),
        ("wh", pa.wh != pb.wh),
        ("name", _names_differ(pa, pb)),
        ("anchor", pa.anchors != pb.anchors),
        ("content", set(pa.content) != set(pb.content)),
        ("relation", _relations_differ(pa, pb)),
        ("order", _swapped(pa, pb)),
        ("literal", pa.literal != pb.literal),
    )
    return tuple(name for name, failed in checks if failed)
