"""Issue 9 items 6 and 7: classes the guard missed in realistic text (SSNs typed with
spaces after "my social", insurance member IDs, names after self-introductions in six
languages, national phone numbers as one digit run), and general medical questions that
were classed ``regulated`` although they are about no one (PHI needs an individual)."""

from __future__ import annotations

from typing import Any

import pytest

from _guard_fakes import EchoProvider
from modelmix.catalog import config_from_dict
from modelmix.engine import ChatService
from modelmix.guard import DataClass, Guard, GuardDetector, load_detector, load_policy
from modelmix.protocol import ChatRequest
from modelmix.testing import ListSink


@pytest.fixture(scope="module")
def detector() -> GuardDetector:
    return load_detector()


def found(detector: GuardDetector, text: str) -> list[tuple[str, str]]:
    return [(e.type, text[e.start:e.end]) for e in detector.detect(text)]


# --- item 6: misses in realistic text ------------------------------------------------------

@pytest.mark.parametrize(("text", "value"), [
    ("my social is 5 3 6 2 2 8 7 6 1", "5 3 6 2 2 8 7 6 1"),
    ("My social is 536 22 8761, can you fill in the form?", "536 22 8761"),
    ("Here's my social: 9 4 7 2 8 7 8 3 3", "9 4 7 2 8 7 8 3 3"),  # never issued: cued anyway
    ("They asked for my social (942 42 6046) for the check.", "942 42 6046"),
    ("my SS number is 004 41 7191", "004 41 7191"),
    ("mi número de seguro social es 4 4 9 6 6 4 9 2 5", "4 4 9 6 6 4 9 2 5"),
    ("my social's 219 09 9999", "219 09 9999"),
])
def test_ssn_with_spaces_after_a_social_cue(detector: GuardDetector, text: str,
                                            value: str) -> None:
    assert ("US_SSN", value) in found(detector, text)


def test_social_without_a_number_said_to_follow_is_no_cue(detector: GuardDetector) -> None:
    assert found(detector, "Social media stats: 123456789 views") == []


@pytest.mark.parametrize(("text", "value"), [
    ("member ID KTREZHKPY52", "KTREZHKPY52"),  # letters first, one late digit pair
    ("my member ID is HLTAHL91HL", "HLTAHL91HL"),
    ("Member Identification Number B0857178348", "B0857178348"),
    ("Subscriber #: KZKIUFNNYY93", "KZKIUFNNYY93"),
    ("health insurance member ID is UOTCELHTHG2", "UOTCELHTHG2"),
    ("Mitgliedsnummer: YEQUDPJLL39", "YEQUDPJLL39"),
    ("Mon numéro d'adhérent est QX7RM2KW81TZ.", "QX7RM2KW81TZ"),
    ("Mi número de afiliado es AFL20931847.", "AFL20931847"),
    ("Il numero di polizza è PLZ883102745.", "PLZ883102745"),
    ("Mijn polisnummer is NL4827XK1930.", "NL4827XK1930"),
    ("O número da carteirinha é CRT5512098734.", "CRT5512098734"),
])
def test_member_ids_after_plan_cues(detector: GuardDetector, text: str, value: str) -> None:
    entities = detector.detect(text)
    assert ("HEALTH_PLAN_ID", value) in [(e.type, text[e.start:e.end]) for e in entities]
    assert detector.classify(entities) is DataClass.REGULATED


@pytest.mark.parametrize(("text", "name"), [
    ("Hallo, mein Name ist Anneliese Körber.", "Anneliese Körber"),
    ("Guten Tag, ich heiße günther schäfer.", "günther schäfer"),
    ("Bonjour, je m'appelle loïc chevallier et j'ai une question.", "loïc chevallier"),
    ("Je m'appelle Maëlle.", "Maëlle"),  # one unknown word after a naming phrase
    ("Mon nom est François Lefèvre.", "François Lefèvre"),
    ("Je suis Hélène Chevallier, responsable du dossier.", "Hélène Chevallier"),
    ("Mi nombre es Begoña Echeverría y escribo por la reserva.", "Begoña Echeverría"),
    ("Il mio nome è niccolò bertolazzi e vorrei disdire.", "niccolò bertolazzi"),
    ("Buongiorno, mi chiamo Ludovica Santoriello.", "Ludovica Santoriello"),
    ("Hoi, mijn naam is Sanne Verhoeven.", "Sanne Verhoeven"),
    ("Ik heet bram de wilde en ik bel over mijn bestelling.", "bram"),
    ("Olá, meu nome é thiago peixoto.", "thiago peixoto"),
    ("Chamo-me Inês Sousa.", "Inês Sousa"),
])
def test_names_after_self_introductions(detector: GuardDetector, text: str, name: str) -> None:
    assert ("PERSON", name) in found(detector, text)


@pytest.mark.parametrize("text", [
    "Ich bin Arzt und suche eine Vorlage für Aufklärungsbögen.",  # German nouns are capitals
    "Ich bin Medizinstudentin. Können Sie mir erklären, wie Metoprolol wirkt?",
    "Je suis Responsable Qualité depuis 2019.",
    "Soy Ingeniera de Datos y busco ejemplos de SQL.",
    "Sono Responsabile Acquisti e devo scrivere un capitolato.",
])
def test_a_copula_before_a_job_is_not_a_name(detector: GuardDetector, text: str) -> None:
    assert found(detector, text) == []


@pytest.mark.parametrize(("text", "value"), [
    ("Je suis joignable au 0616108380.", "0616108380"),
    ("Vous pouvez me joindre au 0758214633 après 18h.", "0758214633"),
    ("Ich bin unter 016088350755 erreichbar.", "016088350755"),  # the cue after the number
    ("Rückruf bitte an 015141818965.", "015141818965"),
    ("Sono reperibile al 3473838445.", "3473838445"),
    ("Llámame al 612345678.", "612345678"),
    ("Me liga no 11987654321.", "11987654321"),
    ("Ik ben bereikbaar op 0612345678.", "0612345678"),
])
def test_national_numbers_as_one_digit_run_after_a_cue(detector: GuardDetector, text: str,
                                                      value: str) -> None:
    assert ("PHONE_NUMBER", value) in found(detector, text)


@pytest.mark.parametrize("text", [
    "Il numero dell'ordine è 1234567.",  # "numero" may name any number: must be valid in IT
    "numéro de commande 1234567890",
])
def test_a_generic_number_cue_needs_a_valid_national_number(detector: GuardDetector,
                                                            text: str) -> None:
    assert found(detector, text) == []


# --- item 7: general medical questions are not PHI -----------------------------------------

GENERAL = [
    "Explain how metoprolol lowers blood pressure",
    "describe the symptoms of type 2 diabetes",
    "What is the usual starting dose of omeprazole for adults?",
    "How is heart failure diagnosed?",
    "Which lab values should be monitored in patients taking allopurinol?",
    "What foods should be avoided while taking warfarin?",
    "Write a patient leaflet explaining Parkinson's disease in plain language.",
    "A patient with asthma asks whether exercise is safe. What does the evidence say?",
    "I'm a nursing student; can you explain how metformin works?",
    "I'm preparing a lecture on migraine. Give me an outline with key references.",
    "For my pharmacology exam, summarise the adverse effects of clopidogrel.",
    "What tests confirm atrial fibrillation, and how accurate are they?",
    "When should a child see a doctor if he or she has asthma?",
    "Welche Nebenwirkungen hat Lisinopril?",
    "Erklären Sie, wie Metoprolol den Blutdruck senkt.",
    "¿Me puedes explicar cómo funciona la metformina?",
    "Mi puoi spiegare come funziona il metoprololo?",
]


@pytest.mark.parametrize("text", GENERAL)
def test_general_medical_questions_are_not_regulated(detector: GuardDetector,
                                                     text: str) -> None:
    entities = detector.detect(text)
    assert detector.classify(entities) in (DataClass.PUBLIC, DataClass.INTERNAL), entities


@pytest.mark.parametrize(("text", "term"), [
    ("my mother takes metoprolol", "metoprolol"),
    ("patient John Smith has type 2 diabetes", "type 2 diabetes"),
    ("I was diagnosed with type 2 diabetes last month; is metformin safe?", "type 2 diabetes"),
    ("My husband is on lisinopril and feels dizzy.", "lisinopril"),
    ("The patient reports asthma and was started on salbutamol.", "asthma"),
    ("Metformin makes me dizzy in the morning.", "Metformin"),
    ("I'm a diabetic and I take metformin twice a day.", "metformin"),
    ("He is on warfarin since his atrial fibrillation diagnosis.", "warfarin"),
])
def test_health_terms_about_someone_stay_regulated(detector: GuardDetector, text: str,
                                                   term: str) -> None:
    entities = detector.detect(text)
    assert term in [text[e.start:e.end] for e in entities]
    assert detector.classify(entities) is DataClass.REGULATED


def _service() -> tuple[ChatService, dict[str, Any], ListSink]:
    config = config_from_dict({
        "deployments": [
            {"name": "cloud", "provider": "openai", "model": "m-cloud", "tier": "proprietary"},
            {"name": "onprem", "provider": "vllm", "model": "m-onprem",
             "base_url": "http://127.0.0.1:9/v1"},
        ],
        "groups": {"all": ["cloud", "onprem"]},
        "router": "ordered",
    })
    fakes: dict[str, Any] = {d.name: EchoProvider(d) for d in config.deployments}
    sink = ListSink()
    guard = Guard(load_policy("healthcare"), load_detector(), in_thread=False)
    return ChatService(config, providers=fakes, usage=sink, guard=guard), fakes, sink


def _chat(text: str) -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": "all", "messages": [{"role": "user", "content": text}]})


async def test_healthcare_policy_lets_a_cloud_model_answer_general_medical_questions() -> None:
    service, fakes, sink = _service()
    for text in ("What foods should be avoided while taking warfarin?",
                 "What is the maximum daily dose of metoprolol?"):
        done = await service.complete(_chat(text))
        assert done.deployment.name == "cloud", text
        audit = sink.records[-1].audit
        assert audit is not None and (audit.data_class, audit.action) == ("public", "allow")
    assert len(fakes["cloud"].calls) == 2
    done = await service.complete(_chat("My mother takes warfarin; what foods should she avoid?"))
    assert done.deployment.name == "onprem"  # PHI stays on premises
    audit = sink.records[-1].audit
    assert audit is not None and (audit.data_class, audit.action) == ("regulated", "route-local")
