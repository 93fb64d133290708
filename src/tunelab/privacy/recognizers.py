"""Recognisers presidio lacks: Chinese mobile, resident ID and bank-card numbers, and URLs
that carry a password. Each is a presidio PatternRecognizer; those with a check digit
refuse matches that fail it. Boundaries are ASCII-only lookarounds, since Chinese text
puts no space between a number and the words around it."""

from __future__ import annotations

import re
from typing import Any

from presidio_analyzer import Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.predefined_recognizers import PhoneRecognizer

from tunelab.privacy.checksums import cn_resident_id_valid, luhn_valid

NOT_BEFORE = r"(?<![0-9A-Za-z+])"
NOT_AFTER = r"(?![0-9A-Za-z])"


class CnMobileRecognizer(PatternRecognizer):
    def __init__(self, supported_language: str = "en") -> None:
        super().__init__(
            supported_entity="CN_MOBILE", supported_language=supported_language,
            patterns=[Pattern("cn_mobile", NOT_BEFORE + r"(?:(?:\+|00)86[- ]?)?1[3-9]\d"
                              r"(?:[- ]?\d{4}){2}" + NOT_AFTER, 0.7)],
            context=["手机", "电话", "联系", "mobile", "phone"])


class CnResidentIdRecognizer(PatternRecognizer):
    def __init__(self, supported_language: str = "en") -> None:
        super().__init__(
            supported_entity="CN_RESIDENT_ID", supported_language=supported_language,
            patterns=[Pattern("cn_resident_id", NOT_BEFORE + r"[1-9]\d{5}(?:18|19|20)\d{2}"
                              r"(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[0-9Xx]"
                              + NOT_AFTER, 0.5)],
            context=["身份证", "证件", "ID"])

    def validate_result(self, pattern_text: str) -> bool:
        return cn_resident_id_valid(pattern_text)


class CnBankCardRecognizer(PatternRecognizer):
    """UnionPay numbers (62...), 16 to 19 digits, which presidio's card pattern stops short
    of; Luhn-checked like any card."""

    def __init__(self, supported_language: str = "en") -> None:
        super().__init__(
            supported_entity="CN_BANK_CARD", supported_language=supported_language,
            patterns=[Pattern("cn_bank_card", NOT_BEFORE + r"62\d{2}(?:[- ]?\d{4}){3}"
                              r"(?:[- ]?\d{1,3})?" + NOT_AFTER, 0.6)],
            context=["银行卡", "卡号", "card"])

    def validate_result(self, pattern_text: str) -> bool:
        digits = [ch for ch in pattern_text if ch.isdigit()]
        return 16 <= len(digits) <= 19 and luhn_valid(pattern_text)


class CredentialUrlRecognizer(PatternRecognizer):
    def __init__(self, supported_language: str = "en") -> None:
        super().__init__(
            supported_entity="URL_CREDENTIALS", supported_language=supported_language,
            patterns=[Pattern("url_with_password", r"[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]+:"
                              r"[^\s@/]+@[^\s/?#\uff0c\u3002]+[^\s\uff0c\u3002]*", 0.9)])


PHONE_WORDS = re.compile(r"phone|tel\b|call|mobile|cell|whatsapp|sms|text me|fax|电话|手机|"
                         r"联系|致电|号码", re.IGNORECASE)
NUMBER_WORDS = re.compile(r"#|order|ticket|ref|invoice|account|no\.|订单|工单|单号|编号|账号",
                          re.IGNORECASE)


class ContextPhoneRecognizer(PhoneRecognizer):
    """presidio's phone numbers (phonenumbers' matcher), except a bare run of digits, which
    is as often an order or ticket number: that one counts only after a phone word within
    30 characters ("call 4155550134", "电话4155550134") and not right after a word that
    names another number ("ticket #4155550134", "订单4155550134")."""

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None
                ) -> list[RecognizerResult]:
        kept = []
        for result in super().analyze(text, entities, nlp_artifacts):
            value = text[result.start:result.end]
            before = text[max(0, result.start - 30):result.start]
            if value.isdigit() and (not PHONE_WORDS.search(before)
                                    or NUMBER_WORDS.search(before[-12:])):
                continue
            kept.append(result)
        return kept
