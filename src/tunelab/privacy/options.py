"""`data.mask_pii` and the types of personal data tunelab masks (light: read by config)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from tunelab.errors import ConfigError

# type -> presidio entities, and the placeholder each type's values become
TYPES: dict[str, tuple[str, ...]] = {
    "email": ("EMAIL_ADDRESS",),
    "phone": ("PHONE_NUMBER", "CN_MOBILE"),
    "card": ("CREDIT_CARD", "CN_BANK_CARD"),
    "iban": ("IBAN_CODE",),
    "ip": ("IP_ADDRESS",),
    "credential_url": ("URL_CREDENTIALS",),
    "cn_id": ("CN_RESIDENT_ID",),
    "person": ("PERSON",),
}
PLACEHOLDERS = {"email": "EMAIL", "phone": "PHONE", "card": "CARD", "iban": "IBAN", "ip": "IP",
                "credential_url": "URL", "cn_id": "ID", "person": "PERSON"}
DEFAULT_TYPES = [name for name in TYPES if name != "person"]


def check_types(types: list[str]) -> list[str]:
    unknown = [name for name in types if name not in TYPES]
    if unknown:
        raise ConfigError(f"unknown type '{unknown[0]}'; choose from {', '.join(TYPES)}")
    return list(dict.fromkeys(types))


class MaskOptions(BaseModel):
    """What to mask. `person` needs `names_run`: a tunelab token-classification run (for
    example one trained on CoNLL-2003 or Resume NER) whose PER entities are names."""

    model_config = ConfigDict(extra="forbid")
    types: list[str] = Field(default_factory=lambda: list(DEFAULT_TYPES))
    names_run: Path | None = None
    min_score: float = Field(default=0.3, ge=0.0, le=1.0)
    # typed: <PHONE_1>, <CARD_2>; neutral: <PII_1>, <PII_2> (no type word in the text)
    placeholders: Literal["typed", "neutral"] = "typed"
    # off: numbers restart in each text, so <EMAIL_1> means "the text's first address".
    # Numbering across a whole file links one person's rows, and a model trained on it
    # learns from numbers (<CARD_2817>) that mean nothing in the next file.
    link_rows: bool = False

    @field_validator("types")
    @classmethod
    def _known(cls, types: list[str]) -> list[str]:
        return check_types(types)

    @model_validator(mode="after")
    def _names(self) -> MaskOptions:
        if self.names_run is not None and "person" not in self.types:
            self.types.append("person")
        if "person" in self.types and self.names_run is None:
            raise ConfigError("type 'person' needs names_run: a tunelab "
                              "token-classification run that tags person names")
        return self


def _switch(value: Any) -> Any:
    """`true` means the default types; `false` (or nothing), no masking."""
    if value is True:
        return {}
    return None if value is False else value


MaskSetting = Annotated[MaskOptions | None, BeforeValidator(_switch)]
