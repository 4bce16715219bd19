"""Pydantic v2 models of every request body and response of the HTTP API."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    StringConstraints,
    field_validator,
)

Id = Annotated[StrictStr, StringConstraints(min_length=1, max_length=200)] | StrictInt
StrictModel = ConfigDict(extra="forbid")


def _text(v: Any) -> Any:
    if isinstance(v, bool):
        raise ValueError("ids must be strings or integers, not booleans")
    return str(v) if isinstance(v, int) else v


class Pair(BaseModel):
    model_config = StrictModel
    user: Id
    item: Id

    _norm = field_validator("user", "item", mode="after")(_text)


class DeletionBody(BaseModel):
    """A deletion request: whole users, whole items, or single interactions (pairs)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"users": ["196"], "legal_ground": "GDPR Art. 17(1)(b)"}],
        },
    )
    users: list[Id] = Field(default_factory=list, max_length=1000)
    items: list[Id] = Field(default_factory=list, max_length=1000)
    pairs: list[Pair] = Field(default_factory=list, max_length=1000)
    legal_ground: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)
    ] = Field(description="The legal ground of the erasure, e.g. 'GDPR Art. 17(1)(b)'.")

    @field_validator("users", "items", mode="after")
    @classmethod
    def _ids(cls, v: list[Any]) -> list[str]:
        return [_text(x) for x in v]


class DeletionAccepted(BaseModel):
    """The acknowledgement: the request is durably recorded (a replay returns it again)."""

    request_id: str
    seq: int
    state: Literal["DATA_DELETED", "REJECTED"] = Field(
        description="State at acknowledgement: DATA_DELETED (rows gone from the store, model "
        "update queued) or REJECTED (see GET /v1/deletions/{id} for the reason)."
    )
    received_at: float
    due_at: float
    status_url: str


class Receipt(BaseModel):
    """A stored receipt: the signed body, its chain hash, the Ed25519 signature over it."""

    receipt_id: str
    request_id: str
    receipt: dict[str, Any] = Field(
        description="The receipt body; its canonical JSON (sorted keys, no spaces) chained "
        "with prev_hash gives hash: sha256(prev_hash + '\\n' + canonical body)."
    )
    hash: str
    signature: str
    key_id: str
    verified: bool = Field(description="The server's own check of hash and signature.")


class DeletionStatus(BaseModel):
    request_id: str
    seq: int
    client: str
    state: str
    legal_ground: str
    received_at: float
    due_at: float
    overdue: bool
    due_extension_reason: str | None = None
    data_deleted_at: float | None = None
    completed_at: float | None = None
    attempts: int
    rows_deleted: int | None = None
    version_id: int | None = None
    receipt_id: str | None = None
    error: str | None = None
    receipt: Receipt | None = None


class PublicKey(BaseModel):
    key_id: str
    algorithm: Literal["Ed25519"]
    public_key: str = Field(description="Raw Ed25519 public key, hex.")


class Recommendation(BaseModel):
    item: str
    score: float


class Recommendations(BaseModel):
    user: str
    k: int
    version: int
    generation: int
    items: list[Recommendation]


class Interaction(BaseModel):
    model_config = StrictModel
    user: Id
    item: Id
    value: float | None = Field(default=None, allow_inf_nan=False)
    timestamp: int | None = None

    _norm = field_validator("user", "item", mode="after")(_text)


class InteractionsBody(BaseModel):
    model_config = StrictModel
    interactions: list[Interaction] = Field(min_length=1, max_length=10000)


class IngestAccepted(BaseModel):
    inserted: int
    duplicates: int
    first_seq: int
    watermark: int


class Health(BaseModel):
    status: Literal["ok"]


class Check(BaseModel):
    ok: bool
    detail: str


class Ready(BaseModel):
    ready: bool
    checks: dict[str, Check]


class ErrorField(BaseModel):
    field: str
    message: str


class Error(BaseModel):
    """Every error: a message (naming the field when one is at fault) and the fields."""

    error: str
    fields: list[ErrorField] = Field(default_factory=list)


__all__ = [
    "DeletionAccepted",
    "DeletionBody",
    "DeletionStatus",
    "Error",
    "Health",
    "IngestAccepted",
    "InteractionsBody",
    "PublicKey",
    "Ready",
    "Receipt",
    "Recommendations",
]
