"""Check-digit and format validators for structured identifiers.

Each takes the identifier with separators already removed and answers whether it is well formed.
Sources: ISO/IEC 7812 (Luhn), ISO 13616 (IBAN, mod 97-10 per ISO 7064), the SSA's SSN
randomisation rules (no area 000, 666 or 900-999; no group 00; no serial 0000), ABA routing
number weights 3-7-1, ISO 3779 (VIN check digit), HMRC NIM39110 (National Insurance number
prefixes), Spain's DNI/NIE control letter (Real Decreto 1553/2005), INSEE NIR key (97 - n mod 97),
Brazil's CPF check digits (Receita Federal), the Dutch BSN eleven-test, Verhoeff (Aadhaar, UIDAI).
"""

from __future__ import annotations

__all__ = [
    "IBAN_LENGTHS",
    "aba_ok",
    "bsn_ok",
    "cn_resident_ok",
    "cpf_ok",
    "dni_ok",
    "iban_ok",
    "luhn_ok",
    "nhs_ok",
    "nino_ok",
    "nir_ok",
    "ssn_ok",
    "verhoeff_ok",
    "vin_ok",
]

# ISO 13616 registry (SWIFT, 2024): IBAN length per country code.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}


def luhn_ok(digits: str) -> bool:
    """ISO/IEC 7812 Luhn check over a string of digits."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """ISO 13616 IBAN: known country, that country's length, mod 97 == 1."""
    iban = iban.upper()
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban[2:4].isdigit() or not iban.isalnum():
        return False
    rearranged = iban[4:] + iban[:4]
    number = "".join(str(int(char, 36)) for char in rearranged)
    return int(number) % 97 == 1


def ssn_ok(digits: str) -> bool:
    """US SSN issuance rules: 9 digits, area not 000/666/9xx, group not 00, serial not 0000."""
    if len(digits) != 9 or not digits.isdigit():
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    if area in {"000", "666"} or area[0] == "9" or group == "00" or serial == "0000":
        return False
    return digits not in {"123456789", "111111111", "078051120"}


def aba_ok(digits: str) -> bool:
    """ABA routing transit number: 9 digits, weights 3-7-1 sum to a multiple of 10."""
    if len(digits) != 9 or not digits.isdigit() or digits[:2] not in _ABA_PREFIXES:
        return False
    weights = (3, 7, 1) * 3
    return sum(int(d) * w for d, w in zip(digits, weights, strict=True)) % 10 == 0


_ABA_PREFIXES = {f"{n:02d}" for n in [*range(0, 13), *range(21, 33), *range(61, 73), 80]}

_VIN_VALUES = {**{str(d): d for d in range(10)}, **dict(zip(
    "ABCDEFGHJKLMNPRSTUVWXYZ",
    [1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 7, 9, 2, 3, 4, 5, 6, 7, 8, 9], strict=True))}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)


def vin_ok(vin: str) -> bool:
    """ISO 3779 / 49 CFR 565 VIN: 17 characters without I, O, Q, check digit in position 9."""
    vin = vin.upper()
    if len(vin) != 17 or any(char not in _VIN_VALUES for char in vin):
        return False
    total = sum(_VIN_VALUES[c] * w for c, w in zip(vin, _VIN_WEIGHTS, strict=True)) % 11
    return vin[8] == ("X" if total == 10 else str(total))


_NINO_BAD_PREFIX = {"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"}


def nino_ok(nino: str) -> bool:
    """UK National Insurance number: two prefix letters, six digits, suffix A-D (HMRC rules)."""
    nino = nino.upper()
    if len(nino) not in (8, 9) or not nino[2:8].isdigit():
        return False
    first, second = nino[0], nino[1]
    if first in "DFIQUV" or second in "DFIOQUV" or nino[:2] in _NINO_BAD_PREFIX:
        return False
    return len(nino) == 8 or nino[8] in "ABCD"


def nhs_ok(digits: str) -> bool:
    """NHS number (England, Wales): 10 digits, mod-11 check digit with weights 10..2."""
    if len(digits) != 10 or not digits.isdigit():
        return False
    check = 11 - sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True)) % 11
    return check != 10 and (check % 11) == int(digits[9])


def dni_ok(value: str) -> bool:
    """Spanish DNI (8 digits + letter) or NIE (X/Y/Z + 7 digits + letter) control letter."""
    value = value.upper()
    if len(value) != 9:
        return False
    body = value[:8]
    if body[0] in "XYZ":
        body = str("XYZ".index(body[0])) + body[1:]
    if not body.isdigit():
        return False
    return "TRWAGMYFPDXBNJZSQVHLCKE"[int(body) % 23] == value[8]


def nir_ok(digits: str) -> bool:
    """French NIR (numéro de sécurité sociale): 13 digits + key = 97 - (number mod 97)."""
    digits = digits.upper().replace("2A", "19").replace("2B", "18")
    if len(digits) != 15 or not digits.isdigit() or digits[0] not in "12378":
        return False
    return 97 - int(digits[:13]) % 97 == int(digits[13:])


def cpf_ok(digits: str) -> bool:
    """Brazilian CPF: 11 digits, two mod-11 check digits, not all equal."""
    if len(digits) != 11 or not digits.isdigit() or len(set(digits)) == 1:
        return False
    for size in (9, 10):
        total = sum(int(d) * w for d, w in zip(digits[:size], range(size + 1, 1, -1),
                                               strict=True))
        check = (total * 10) % 11 % 10
        if check != int(digits[size]):
            return False
    return True


def bsn_ok(digits: str) -> bool:
    """Dutch BSN eleven-test: 9 digits, weights 9..2 and -1, sum divisible by 11."""
    if len(digits) != 9 or not digits.isdigit() or digits == "000000000":
        return False
    total = sum(int(d) * w for d, w in zip(digits, (9, 8, 7, 6, 5, 4, 3, 2, -1), strict=True))
    return total % 11 == 0


_VERHOEFF_D = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5], [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7], [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3], [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
]
_VERHOEFF_P = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4], [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7], [9, 4, 5, 3, 1, 2, 6, 8, 7, 0], [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5], [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
]


def verhoeff_ok(digits: str) -> bool:
    """Verhoeff dihedral check (Aadhaar numbers, 12 digits, first digit 2-9)."""
    if not digits.isdigit():
        return False
    check = 0
    for position, char in enumerate(reversed(digits)):
        check = _VERHOEFF_D[check][_VERHOEFF_P[position % 8][int(char)]]
    return check == 0


def cn_resident_ok(value: str) -> bool:
    """Chinese resident identity number (GB 11643): 17 digits, then the ISO 7064 MOD 11-2
    check character (``0``-``9`` or ``X``)."""
    if len(value) != 18 or not value[:17].isdigit():
        return False
    total = sum(int(d) * (2 ** (17 - i) % 11) for i, d in enumerate(value[:17]))
    return "10X98765432"[total % 11] == value[17].upper()
