"""Seeded synthetic texts with known personal data, in English and Chinese, for
`bench/privacy.py`: each text carries one value of one type at a known span, among
distractors that are not personal data (order numbers, amounts, dates, times).

Phone numbers are drawn at random and kept only if `phonenumbers` calls them valid for
their region; card numbers carry a Luhn check digit, IBANs their mod-97 digits and
Chinese resident IDs their GB 11643 check character, as real ones do.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass

import phonenumbers

from tunelab.privacy.checksums import cn_id_check_char, cn_resident_id_valid, luhn_valid

REGIONS = ["110101", "310104", "440305", "320102", "510107", "420106", "620102", "330106"]
IBAN_LAYOUT = {"GB": "AAAA#{14}", "DE": "#{18}", "FR": "#{23}", "NL": "AAAA#{10}"}


@dataclass
class Sample:
    language: str
    kind: str
    text: str
    start: int
    end: int


def digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def grouped(number: str, sizes: list[int], sep: str) -> str:
    parts, at = [], 0
    for size in sizes:
        parts.append(number[at:at + size])
        at += size
    if at < len(number):
        parts.append(number[at:])
    return sep.join(p for p in parts if p)


def card(rng: random.Random, language: str) -> str:
    prefix, length, sizes = rng.choice(
        [("4", 16, [4, 4, 4, 4]), ("5" + rng.choice("12345"), 16, [4, 4, 4, 4]),
         ("3" + rng.choice("47"), 15, [4, 6, 5])] if language == "en" or rng.random() < 0.3
        else [("62" + digits(rng, 2), n, [4, 4, 4, 4]) for n in (16, 17, 18, 19)])
    body = prefix + digits(rng, length - len(prefix) - 1)
    number = next(body + d for d in string.digits if luhn_valid(body + d))
    return grouped(number, sizes, rng.choice([" ", "-", ""]))


def iban(rng: random.Random, language: str) -> str:
    country = rng.choice(list(IBAN_LAYOUT))
    layout = IBAN_LAYOUT[country]
    bban, i = "", 0
    while i < len(layout):
        kind = layout[i]
        count = 1
        if i + 1 < len(layout) and layout[i + 1] == "{":
            close = layout.index("}", i)
            count, i = int(layout[i + 2:close]), close
        bban += "".join(rng.choice(string.ascii_uppercase if kind == "A" else string.digits)
                        for _ in range(count))
        i += 1
    numeric = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    check = 98 - int(numeric) % 97
    value = f"{country}{check:02d}{bban}"
    return grouped(value, [4] * 10, " ") if rng.random() < 0.6 else value


def phone(rng: random.Random, language: str) -> str:
    if language == "zh":
        if rng.random() < 0.8:
            mobile = "1" + rng.choice("3456789") + digits(rng, 9)
            style = rng.randrange(4)
            return [mobile, grouped(mobile, [3, 4, 4], " "), grouped(mobile, [3, 4, 4], "-"),
                    "+86 " + grouped(mobile, [3, 4, 4], " ")][style]
        region = "CN"
    else:
        region = rng.choice(["US", "US", "GB", "DE", "IN", "AU"])
    while True:
        candidate = f"+{phonenumbers.country_code_for_region(region)}{digits(rng, 10)}"
        try:
            parsed = phonenumbers.parse(candidate)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            style = rng.choice([phonenumbers.PhoneNumberFormat.INTERNATIONAL,
                                phonenumbers.PhoneNumberFormat.NATIONAL])
            return phonenumbers.format_number(parsed, style)


def email(rng: random.Random, language: str) -> str:
    user = rng.choice(["jane.roe", "j.smith", "wang.fang", "li_lei", "chen88", "m.garcia",
                       "support-team", "alex"]) + rng.choice(["", str(rng.randrange(100))])
    domain = rng.choice(["example.com", "mail.example.org", "corp.example.co.uk",
                         "example.cn", "163.com", "qq.com", "gmail.com"])
    return f"{user}@{domain}"


def ip(rng: random.Random, language: str) -> str:
    return ".".join(str(rng.randrange(1, 255)) for _ in range(4))


def credential_url(rng: random.Random, language: str) -> str:
    scheme = rng.choice(["https", "postgres", "mysql", "ftp", "redis"])
    user = rng.choice(["admin", "svc", "deploy", "root"])
    secret = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(10))
    return f"{scheme}://{user}:{secret}@db{rng.randrange(9)}.example.com/{rng.choice(['app', 'x'])}"


def cn_id(rng: random.Random, language: str) -> str:
    first = (rng.choice(REGIONS) + f"{rng.randrange(1950, 2006)}{rng.randrange(1, 13):02d}"
             f"{rng.randrange(1, 29):02d}" + digits(rng, 3))
    return first + cn_id_check_char(first)


MAKERS: dict[str, Callable[[random.Random, str], str]] = {
    "email": email, "phone": phone, "card": card, "iban": iban, "ip": ip,
    "credential_url": credential_url, "cn_id": cn_id}
WORD = {"en": {"email": "email", "phone": "phone number", "card": "card number",
               "iban": "IBAN", "ip": "IP address", "credential_url": "database URL",
               "cn_id": "ID number"},
        "zh": {"email": "邮箱", "phone": "电话", "card": "银行卡号", "iban": "IBAN账号",
               "ip": "IP地址", "credential_url": "数据库地址", "cn_id": "身份证号"}}
TEMPLATES = {
    "en": ["Hi, my {word} is {value} and my order {order} still has not arrived.",
           "Please update the {word} on file to {value} before {date}.",
           "I paid {amount} on {date} at {time}; you can reach me via {value}.",
           "{value} is my {word}, ticket #{order}.",
           "Refund {amount} for order {order}, {word}: {value}"],
    "zh": ["您好，我的{word}是{value}，订单{order}还没到。",
           "请把{word}改成{value}，{date}之前处理。",
           "我在{date} {time}付了{amount}，联系方式{value}。",
           "{word}：{value}（工单{order}）",
           "退款{amount}，订单号{order}，{word}{value}"]}


def order_number(rng: random.Random) -> str:
    """Mostly short; a fifth are 16 digits failing Luhn and a tenth 18 digits failing the
    ID check, which only the check digits tell from a card or an ID."""
    roll = rng.random()
    if roll < 0.2:
        number = digits(rng, 16)
        return number if not luhn_valid(number) else number[:-1] + str((int(number[-1]) + 1) % 10)
    if roll < 0.3:
        number = rng.choice(REGIONS) + "1990" + "0101" + digits(rng, 4)
        return number if not cn_resident_id_valid(number) else number[:-1] + (
            "0" if number[-1] != "0" else "1")
    return digits(rng, rng.choice([6, 8, 10]))


def distractors(rng: random.Random, language: str) -> dict[str, str]:
    money = f"${rng.randrange(5, 5000)}.{rng.randrange(100):02d}" if language == "en" \
        else f"{rng.randrange(5, 5000)}元"
    return {"order": order_number(rng),
            "date": f"2025-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
            "time": f"{rng.randrange(24):02d}:{rng.randrange(60):02d}", "amount": money}


def samples(per_type: int = 200, seed: int = 0) -> list[Sample]:
    rng = random.Random(seed)
    out = []
    for language in ("en", "zh"):
        for kind, make in MAKERS.items():
            for _ in range(per_type):
                value = make(rng, language)
                template = rng.choice(TEMPLATES[language])
                before, _, after = template.partition("{value}")
                fill = {"word": WORD[language][kind], **distractors(rng, language)}
                head, tail = before.format(**fill), after.format(**fill)
                out.append(Sample(language, kind, head + value + tail, len(head),
                                  len(head) + len(value)))
    return out
