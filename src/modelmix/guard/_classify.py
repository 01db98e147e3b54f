"""From detected entities to a data class: public, internal, confidential or regulated.

Default rules (:data:`DEFAULT_RULES`), highest class wins:

* **regulated**: protected health information (``MEDICAL_RECORD_NUMBER``, ``HEALTH_PLAN_ID``,
  ``MEDICAL_CONDITION`` and ``MEDICATION``, which the detector reports only when tied to a
  person), financial account data (``CREDIT_CARD``,
  ``IBAN_CODE``, ``BANK_ACCOUNT``) and government identifiers (``US_SSN``, ``NATIONAL_ID``,
  ``PASSPORT``, ``DRIVER_LICENSE``). Sources: HIPAA 45 CFR 164.514(b)(2) (the 18 identifiers),
  PCI DSS v4 (primary account numbers), GDPR Art. 9 and 87 (health data, national IDs).
* **confidential**: credentials (``API_KEY``, ``PASSWORD``) and direct personal contact data
  (``EMAIL_ADDRESS``, ``PHONE_NUMBER``, ``ADDRESS``, ``DATE_OF_BIRTH``, ``VEHICLE_ID``).
* **internal**: weaker identifiers on their own: ``PERSON``, ``IP_ADDRESS``, ``DEVICE_ID``.
* **escalation**: a diagnosis or medication together with any identifier (name, contact, ID) is
  regulated whatever the class of health types is set to, since the combination is PHI.
* **public**: nothing found.

Everything is configurable: pass your own :class:`ClassificationRules` to the detector.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from modelmix.guard._base import DataClass, Entity

__all__ = ["DEFAULT_RULES", "ClassificationRules", "classify"]

_R, _C, _I = DataClass.REGULATED, DataClass.CONFIDENTIAL, DataClass.INTERNAL
_DEFAULT_CLASSES: dict[str, DataClass] = {
    "MEDICAL_RECORD_NUMBER": _R, "HEALTH_PLAN_ID": _R, "CREDIT_CARD": _R, "IBAN_CODE": _R,
    "BANK_ACCOUNT": _R, "US_SSN": _R, "NATIONAL_ID": _R, "PASSPORT": _R, "DRIVER_LICENSE": _R,
    "API_KEY": _C, "PASSWORD": _C, "EMAIL_ADDRESS": _C, "PHONE_NUMBER": _C, "ADDRESS": _C,
    "DATE_OF_BIRTH": _C, "VEHICLE_ID": _C,
    "PERSON": _I, "IP_ADDRESS": _I, "DEVICE_ID": _I,
    "MEDICAL_CONDITION": _R, "MEDICATION": _R,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ClassificationRules:
    """Which data class each entity type implies, and when health terms make a text regulated.

    Attributes:
        classes: entity type -> data class; types not listed count as ``unknown_class``.
        unknown_class: class of an entity type missing from ``classes``.
        health_types: types that are PHI when the text also identifies someone.
        identifying_types: types that identify someone for that rule.
        health_class: class of a text with both a health type and an identifying type.
    """

    classes: Mapping[str, DataClass] = field(
        default_factory=lambda: MappingProxyType(dict(_DEFAULT_CLASSES)))
    unknown_class: DataClass = DataClass.CONFIDENTIAL
    health_types: frozenset[str] = frozenset({"MEDICAL_CONDITION", "MEDICATION"})
    identifying_types: frozenset[str] = frozenset({
        "PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "ADDRESS", "DATE_OF_BIRTH", "US_SSN",
        "NATIONAL_ID", "PASSPORT", "DRIVER_LICENSE", "MEDICAL_RECORD_NUMBER", "HEALTH_PLAN_ID",
        "IP_ADDRESS", "DEVICE_ID", "VEHICLE_ID", "CREDIT_CARD", "IBAN_CODE", "BANK_ACCOUNT",
    })
    health_class: DataClass = DataClass.REGULATED

    def class_of(self, entity_type: str) -> DataClass:
        """The data class one entity of ``entity_type`` implies on its own."""
        return self.classes.get(entity_type, self.unknown_class)


DEFAULT_RULES = ClassificationRules()


def classify(entities: Sequence[Entity], rules: ClassificationRules = DEFAULT_RULES) -> DataClass:
    """The data class of a text with ``entities`` under ``rules``.

    >>> classify([Entity("PERSON", 0, 4)])
    <DataClass.INTERNAL: 'internal'>
    >>> classify([Entity("PERSON", 0, 4), Entity("MEDICATION", 9, 18)])
    <DataClass.REGULATED: 'regulated'>
    """
    if not entities:
        return DataClass.PUBLIC
    types = {entity.type for entity in entities}
    result = max((rules.class_of(t) for t in types), key=lambda c: c.rank)
    if types & rules.health_types and types & rules.identifying_types:
        result = max(result, rules.health_class, key=lambda c: c.rank)
    return result
