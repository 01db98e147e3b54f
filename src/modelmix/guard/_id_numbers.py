"""Identifiers found by a cue or a national format: medical record and health-plan numbers,
passports and driving licences, national IDs (checksummed formats anywhere, any ID after a
cue), bank accounts and routing numbers. Reads normalised text like :mod:`._recognizers`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from modelmix.guard._base import Entity
from modelmix.guard._patterns import (
    Anchored,
    Recognizer,
    cue_regex,
    digits_of,
    has_digit,
    register,
)
from modelmix.guard._validators import (
    aba_ok,
    bsn_ok,
    cn_resident_ok,
    cpf_ok,
    dni_ok,
    nhs_ok,
    nino_ok,
    nir_ok,
    verhoeff_ok,
)

__all__ = ["BankAccountRecognizer", "MedicalIdRecognizer", "NationalIdRecognizer",
           "TravelIdRecognizer"]


_ID_VALUE = r"(?=[A-Za-z\-]{0,6}\d)[A-Za-z0-9](?:[A-Za-z0-9]|[\-./](?=[A-Za-z0-9])){3,24}"
_DIGITS_VALUE = r"\d(?:[ \-.]?\d){5,19}"


def _cued(pattern: Anchored, text: str, kind: str, score: float,
          min_digits: int = 4) -> Iterator[Entity]:
    for match in pattern.finditer(text):
        value = match.group("value")
        if len(digits_of(value)) >= min_digits:
            yield Entity(kind, match.start("value"), match.end("value"), score)


_MRN_CUES = (r"mrn|m\.r\.n\.|medical record|med\.? ?rec(?:ord)?|patient (?:id|no|number|#|"
             r"identifier)|pt\.? id|chart (?:no|number|#|id)|hospital (?:no|number|id)|"
             r"record|health record|ehr (?:id|no|number)|emr (?:id|no|number)|"
             r"patientennummer|dossier m[ée]dical|historia cl[ií]nica|cartella clinica")
_PLAN_CUES = (r"member(?:ship)?'?s? ?(?:id|identification|no|number|num|#)|"
              r"subscriber'?s? ?(?:id|identification|no|number|num|#)|"
              r"policy ?(?:id|no|number|num|#)|policyholder id|"
              r"insurance (?:member )?(?:id|no|number|policy|card)|"
              r"health ?plan (?:id|no|number|#)?|plan id|"
              r"group (?:id|no|number|#)|medicare (?:id|no|number|card)?|"
              r"medicaid (?:id|no|number)?|"
              r"\bmbi\b|beneficiary (?:id|no|number)|insured id|versichertennummer|"
              r"versicherungsnummer|mitgliedsnummer|krankenkassennummer|"
              r"krankenversicherungsnummer|carte vitale|adhérent|adherent|assuré|"
              r"tarjeta sanitaria|tessera sanitaria|afiliad[oa]|"
              r"numero de afiliaci[oó]n|número de afiliaci[oó]n|póliza|poliza|polizza|"
              r"codice assistito|polisnummer|verzekerdennummer|lidnummer|carteirinha|"
              r"benefici[aá]rio|hicn")
# A plan ID after its cue: the shared ID shape, or 8-14 letters and digits with a digit
# anywhere ("KTREZHKPY52", "W2837461950"); insurers print them in capitals.
_PLAN_VALUE = r"(?=[A-Z0-9]{0,13}\d)[A-Z0-9]{8,14}|" + _ID_VALUE + "|" + _DIGITS_VALUE
# CMS Medicare Beneficiary Identifier (MBI) format, 11 characters, letters without S, L, O, I, B, Z.
_MBI = re.compile(r"[1-9](?<![A-Za-z0-9][1-9])[AC-HJKMNP-RT-Y][AC-HJKMNP-RT-Y0-9]\d-?"
                  r"[AC-HJKMNP-RT-Y][AC-HJKMNP-RT-Y0-9]\d-?[AC-HJKMNP-RT-Y]{2}\d{2}(?![A-Za-z0-9])")


@register
class MedicalIdRecognizer(Recognizer):
    """Medical record numbers and health-plan IDs (HIPAA identifiers 8 and 9): cue + ID token."""

    name = "medical_ids"
    types = ("MEDICAL_RECORD_NUMBER", "HEALTH_PLAN_ID")
    _MRN = cue_regex(_MRN_CUES, _ID_VALUE + "|" + _DIGITS_VALUE)
    _PLAN = cue_regex(_PLAN_CUES, _PLAN_VALUE)

    def find(self, text: str) -> Iterator[Entity]:
        if not has_digit(text):
            return  # every pattern here needs a digit
        yield from _cued(self._MRN, text, "MEDICAL_RECORD_NUMBER", 0.95, min_digits=5)
        for match in self._PLAN.finditer(text):
            value = match.group("value")
            if len(digits_of(value)) >= 3 or (8 <= len(value) <= 14 and value.isalnum()
                                               and value.isupper()):
                yield Entity("HEALTH_PLAN_ID", match.start("value"), match.end("value"), 0.9)
        for match in _MBI.finditer(text):
            yield Entity("HEALTH_PLAN_ID", match.start(), match.end(), 0.9)


_PASSPORT_CUES = (r"passport|reisepass|passeport|pasaporte|passaporto|paspoort|passaporte|"
                  r"travel document")
_LICENSE_CUES = (r"driver'?s'? licen[cs]e|driving licen[cs]e|driver licen[cs]e|\bdl\b|"
                 r"licen[cs]e (?:no|number|#|id)|führerschein|fuhrerschein|permis de conduire|"
                 r"licencia de conducir|carnet de conducir|patente di guida|rijbewijs")


@register
class TravelIdRecognizer(Recognizer):
    """Passport and driver's licence numbers, after a cue (their formats are too generic)."""

    name = "travel_ids"
    types = ("PASSPORT", "DRIVER_LICENSE")
    _PASSPORT = cue_regex(_PASSPORT_CUES, r"(?=[A-Za-z]{0,3}\d)[A-Za-z0-9]{6,10}"
                          r"|\d{3,4}[ \-]\d{3,6}", gap=30)
    _LICENSE = cue_regex(_LICENSE_CUES, _ID_VALUE, gap=30)

    def find(self, text: str) -> Iterator[Entity]:
        if not has_digit(text):
            return  # every pattern here needs a digit
        yield from _cued(self._PASSPORT, text, "PASSPORT", 0.9, min_digits=5)
        yield from _cued(self._LICENSE, text, "DRIVER_LICENSE", 0.85, min_digits=4)


def _compact(value: str) -> str:
    return value.replace(" ", "").replace("-", "").replace(".", "")


_NATIONAL_CUES = (r"national (?:id|identity|insurance)|identity (?:card|number|no)|id card|"
                  r"id (?:no|number|#)|personalausweis(?:nummer)?|steuer-?id|"
                  r"steuer-?identifikationsnummer|tax (?:id|identification|number|no)|\btin\b|"
                  r"\bnir\b|numero de s[ée]curit[ée] sociale|numéro de s[ée]curit[ée] sociale|"
                  r"secu|sécu|"
                  r"\bdni\b|\bnie\b|\bnif\b|codice fiscale|\bbsn\b|burgerservicenummer|\bcpf\b|"
                  r"\bsin\b|social insurance|\bnino\b|aadhaar|aadhar|\bpan\b|pesel|"
                  r"nhs (?:no|number)|personnummer|\brfc\b|\bcurp\b")


@register
class NationalIdRecognizer(Recognizer):
    """Government IDs other than US SSNs: checksummed formats anywhere, others after a cue.

    Without a cue: UK NINO (prefix rules), Spanish DNI/NIE (control letter), Italian codice
    fiscale (shape), French NIR (key), Brazilian CPF (check digits), Aadhaar (4-4-4, Verhoeff),
    Chinese resident ID (birth date inside, ISO 7064 check character).
    With a cue: any 6-20 digit or alphanumeric ID; Dutch BSN must
    pass the eleven-test.
    """

    name = "national_id"
    types = ("NATIONAL_ID",)
    _NINO = re.compile(r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z][ \-]?\d{2}[ \-]?\d{2}[ \-]?\d{2}[ \-]?"
                       r"[A-D](?![A-Za-z0-9])")
    _DNI = re.compile(r"[XYZ\d](?<![A-Za-z0-9][XYZ\d])\d{6,7}[ \-]?[A-Z](?![A-Za-z0-9])")
    _CF = re.compile(r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z]{5}\d{2}[A-Z]\d{2}[A-Z]\d{3}[A-Z]"
                     r"(?![A-Za-z0-9])")
    _NIR = re.compile(r"[12378](?<![\w][12378])[ .]?\d{2}[ .]?\d{2}[ .]?(?:\d{2}|2[AB])[ .]?\d{3}"
                      r"[ .]?\d{3}[ .]?\d{2}(?![\w])")
    _NHS = re.compile(r"\d(?<![\w\-]\d)\d{2}[ \-]?\d{3}[ \-]?\d{4}(?![\w]|[ \-]\d)")
    _CPF = re.compile(r"\d(?<![\w.]\d)\d{2}\.\d{3}\.\d{3}-\d{2}(?![\w])")
    _AADHAAR = re.compile(r"[2-9](?<![\w][2-9])\d{3}[ \-]\d{4}[ \-]\d{4}(?![\w]|[ \-]\d)")
    _CUED = cue_regex(_NATIONAL_CUES, _DIGITS_VALUE + "|" + _ID_VALUE, gap=30)
    # China: 17 digits and a check character (ISO 7064 MOD 11-2), a birth date inside.
    _CN_RESIDENT = re.compile(r"(?<![\w])\d{6}(?:19|20)\d{2}(?:0[1-9]|1[0-2])"
                              r"(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx](?![\w])")

    def find(self, text: str) -> Iterator[Entity]:
        if not has_digit(text):
            return  # every pattern here needs a digit
        checks: list[tuple[re.Pattern[str], Callable[[str], bool]]] = [
            (self._NINO, lambda v: nino_ok(_compact(v))),
            (self._DNI, lambda v: dni_ok(_compact(v))),
            (self._CF, lambda v: True),
            (self._NIR, lambda v: nir_ok(_compact(v))),
            (self._CPF, lambda v: cpf_ok(digits_of(v))),
            (self._AADHAAR, lambda v: verhoeff_ok(digits_of(v))),
            (self._CN_RESIDENT, cn_resident_ok),
        ]
        if "nhs" in text.lower():
            checks.append((self._NHS, lambda v: nhs_ok(digits_of(v))))
        for pattern, check in checks:
            for match in pattern.finditer(text):
                if check(match.group()):
                    yield Entity("NATIONAL_ID", match.start(), match.end(), 0.95)
        for match in self._CUED.finditer(text):
            value = match.group("value")
            digits = digits_of(value)
            short = len(digits) < 5 and not (len(digits) >= 4 and len(value) >= 8)
            if short or (len(digits) == 9 and "bsn" in match.group().lower()
                         and not bsn_ok(digits)):
                continue  # "id card 1234" is not an ID; "PAN ABCPE1234F" is
            # 0.87: an ID cue ("NIR", "sécu", "aadhaar") is more specific than the phone
            # recognizer's "numéro"/"number" cue (0.85) on the same digits
            yield Entity("NATIONAL_ID", match.start("value"), match.end("value"), 0.87)


_ACCOUNT_CUES = (r"account (?:no|number|#|num)|acct\.?(?: ?(?:no|number|#))?|a/c(?: no)?|"
                 r"bank account|checking account|savings account|account|checking|savings|holder|"
                 r"kontonummer|konto|"
                 r"numero de compte|numéro de compte|compte|numero de cuenta|número de cuenta|"
                 r"cuenta|numero di conto|conto|"
                 r"rekeningnummer|rekening|bban|sort code|\bbsb\b|iban")
_ROUTING_CUES = r"routing(?: transit)?(?: number| no| #)?|\baba\b|\brtn\b|transit number"


@register
class BankAccountRecognizer(Recognizer):
    """Bank account numbers (cue + 6-20 digits, or a BBAN) and ABA routing numbers (checked)."""

    name = "bank_account"
    types = ("BANK_ACCOUNT",)
    _ACCOUNT = cue_regex(_ACCOUNT_CUES, r"\d(?:[ \-]?\d){5,19}|(?=[A-Z]{0,6}\d)[A-Z0-9]{10,30}",
                         gap=30)
    _ROUTING = cue_regex(_ROUTING_CUES, r"\d{9}", gap=30)

    def find(self, text: str) -> Iterator[Entity]:
        if not has_digit(text):
            return  # every pattern here needs a digit
        for match in self._ACCOUNT.finditer(text):
            value = match.group("value")
            if len(digits_of(value)) >= 6:
                yield Entity("BANK_ACCOUNT", match.start("value"), match.end("value"), 0.85)
        for match in self._ROUTING.finditer(text):
            if aba_ok(match.group("value")):
                yield Entity("BANK_ACCOUNT", match.start("value"), match.end("value"), 0.9)
