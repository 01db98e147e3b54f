"""Self-introductions in seven languages: how strongly the words before a name cue it, and
lower-case names after them.

Two kinds of introduction differ in how much they say:

* a **naming** phrase ("my name is", "mein Name ist", "je m'appelle", "me llamo", "mi chiamo",
  "mijn naam is", "meu nome é"...) is followed by a name: one capitalised word that no
  gazetteer knows ("Je m'appelle Maëlle") counts, and so do lower-case words after the
  phrases in other languages than English ("ich heiße günther schäfer"; after "my name is"
  the gazetteers decide, as English puts many words there);
* a **copula** ("ich bin", "je suis", "soy", "sono", "ik ben", "sou") is followed by a name or
  by a job or state, capitalised in German and often in titles ("Ich bin Arzt", "Je suis
  Responsable Qualité"): it cues only words a gazetteer knows as names.

Gazetteer look-ups fold accents (:func:`fold`): "Élodie", "Íñigo", "Jürgen" match the
"elodie", "inigo", "jurgen" of lists that spell names without them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator
from functools import lru_cache

from modelmix.guard._patterns import Anchored

__all__ = ["COPULA", "CUE", "NAMING", "NAMING_LAST", "NAMING_WORDS", "NONE", "WEAK_WORDS",
           "fold", "intro_level", "lower_case_intros"]

#: Cue levels: nothing, a copula, another cue ("patient", "Dear"), a naming phrase.
NONE, COPULA, CUE, NAMING = 0, 1, 2, 3

_NAMING_PAIRS = frozenset({
    ("name", "is"), ("name", "was"), ("name's", ""), ("name", "ist"), ("nom", "est"),
    ("nombre", "es"), ("nome", "è"), ("nome", "é"), ("naam", "is"), ("m'appelle", ""),
    ("heiße", ""), ("heisse", ""), ("llamo", ""), ("chiamo", ""), ("heet", ""), ("chamo", ""),
    ("chamo-me", ""), ("name:", ""), ("nom:", ""), ("nombre:", ""), ("nome:", ""),
    ("naam:", ""),
})
#: Single words that introduce a name ("m'appelle", "chamo-me", "name:").
NAMING_WORDS = frozenset(first for first, second in _NAMING_PAIRS if not second)
#: The last word of each naming phrase ("is", "ist", "m'appelle").
NAMING_LAST = frozenset(second or first for first, second in _NAMING_PAIRS)
#: Copulas that may stand before a name, a job or a state.
WEAK_WORDS = frozenset("bin suis soy sono ben sou".split())

_FOLD_EXTRA = str.maketrans({"ß": "ss", "ø": "o", "æ": "ae", "œ": "oe", "ł": "l", "đ": "d",
                             "\u0131": "i", "\u2019": "'"})


@lru_cache(maxsize=4096)
def fold(word: str) -> str:
    """``word`` without accents ("jürgen" -> "jurgen", "groß" -> "gross")."""
    if word.isascii():
        return word
    decomposed = unicodedata.normalize("NFKD", word.translate(_FOLD_EXTRA))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def intro_level(tail: list[str]) -> int:
    """:data:`NAMING` or :data:`COPULA` when the last words ``tail`` (lower case) introduce
    someone, else :data:`NONE`."""
    pairs = [(tail[-1], "")] if tail else []
    if len(tail) >= 2:
        pairs.append((tail[-2], tail[-1]))
    if any(pair in _NAMING_PAIRS for pair in pairs):
        return NAMING
    if tail and tail[-1] in WEAK_WORDS:
        return COPULA
    return NONE


_INTRO = Anchored(
    r"(?:(?P<calls>ich hei(?:ß|ss)e|je m'appelle|me llamo|mi chiamo|ik heet|me chamo|chamo-me)"
    r"|(?P<names>mein name ist|mon nom est|mi nombre es|il mio nome [èe]|mijn naam is|"
    r"meu nome [ée])|(?P<copula>ich bin|je suis|yo soy|soy|io sono|sono|ik ben|eu sou|sou))"
    r"\s+(?P<name>[a-zß\u00e0-\u00ff][a-zß\u00e0-\u00ff'\-]{1,20}"
    r"(?:\s+[a-zß\u00e0-\u00ff][a-zß\u00e0-\u00ff'\-]{1,20}){0,2})",
    ("ich hei", "je m'appelle", "me llamo", "mi chiamo", "ik heet", "me chamo", "chamo-me",
     "mein name", "mon nom", "mi nombre", "il mio", "mijn naam", "meu nome", "ich bin",
     "je suis", "yo soy", "soy", "io sono", "sono", "ik ben", "eu sou", "sou"),
)
# Function words that end a lower-case name ("je m'appelle loïc et j'ai ...").
_STOP = frozenset(
    "und oder aber ich bin aus von mit bei zu der die das den dem ein eine nicht auch hier "
    "et ou mais je suis de du des le la les un une pas aussi ici très "
    "y o pero soy del el los las uno una no también aquí muy "
    "e ma sono di da il lo gli non anche qui molto "
    "en of maar ik ben van uit het een niet ook hier heel "
    "eu sou com do dos das um uma não também aqui na no muito "
    "and or but i from the a an to is".split())


def lower_case_intros(text: str, is_common: Callable[[str], bool],
                      is_given: Callable[[str], bool],
                      is_known: Callable[[str], bool]) -> Iterator[tuple[int, int]]:
    """Spans of lower-case names after a self-introduction in ``text``.

    After a naming phrase ("ich heiße", "je m'appelle", "mein Name ist", "mijn naam is") the
    one to three words that follow, up to a function word or a common English word, are the
    name; after a copula ("ich bin", "je suis", "soy") only known names count: a given name
    (``is_given``) or two known names (``is_known``) first, then known names.
    """
    for match in _INTRO.finditer(text):
        if not match.group("name")[0].islower():
            continue  # capitalised names are the run recognizer's
        taken = []
        for word in _WORD.finditer(text, match.start("name"), match.end("name")):
            key = word.group().strip("'-")
            if key in _STOP or is_common(key):
                break
            taken.append(word)
        if not taken:
            continue
        if match.group("copula"):  # "ich bin müde", "soy feliz": known names only
            keys = [fold(word.group().strip("'-")) for word in taken]
            count = 1 if is_given(keys[0]) else 0
            while count < len(keys) and is_known(keys[count]) and (
                    count or (len(keys) > 1 and is_known(keys[1]))):
                count += 1
            taken = taken[:count]
            if not taken:
                continue
        yield taken[0].start(), taken[-1].end()


_WORD = re.compile(r"\S+")
