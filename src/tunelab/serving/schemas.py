"""The service's request and response bodies, as the OpenAPI schema documents them."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, create_model, model_validator

from tunelab.data.text_checks import text_problem


def _usable_text(value: str) -> str:
    problem = text_problem(value)
    if problem:
        raise ValueError(problem)
    return value


Text = Annotated[str, Field(min_length=1, pattern=r"\S", description="A non-empty text"),
                 AfterValidator(_usable_text)]


class PredictRequest(BaseModel):
    """Give `texts` to a single-text model, or `pairs` to a model trained on text pairs."""

    texts: list[Text] | None = Field(default=None, min_length=1,
                                     description="Texts to classify or tag")
    pairs: list[tuple[Text, Text]] | None = Field(
        default=None, min_length=1, description="Text pairs [first, second], for a model "
        "trained with data.text_pair_column")

    @model_validator(mode="after")
    def _one_kind(self) -> PredictRequest:
        if (self.texts is None) == (self.pairs is None):
            raise ValueError("give exactly one of texts or pairs")
        return self

    @property
    def inputs(self) -> list[Any]:
        return list(self.texts) if self.texts is not None else [list(p) for p in self.pairs]


class PredictResponse(BaseModel):
    model: str
    request_id: str
    predictions: list[dict[str, Any]]


def task_request(task: Any) -> type[PredictRequest]:
    """The predict body of a task: texts or pairs, plus the task's own request options."""
    fields = {name: (field.annotation, field) for name, field in task.Request.model_fields.items()}
    return create_model("PredictRequest", __base__=PredictRequest, **fields)


def task_response(task: Any) -> type[PredictResponse]:
    """The predict answer of a task: a list of the task's Prediction."""
    return create_model("PredictResponse", __base__=PredictResponse,
                        predictions=(list[task.Prediction], ...))


class FeedbackRequest(BaseModel):
    text: Annotated[Text, Field(max_length=100_000)]
    correct_label: str = Field(min_length=1, max_length=200,
                               description="One of the model's labels (GET /v1/model)")
    predicted: str | None = Field(default=None, max_length=200,
                                  description="One of the model's labels, if given")
    request_id: str | None = Field(default=None, max_length=100)


class ExplainRequest(BaseModel):
    text: Annotated[Text, Field(max_length=100_000)]
    label: str | None = Field(default=None, min_length=1, max_length=200, description=(
        "Explain this label (NER: this entity type) instead of the prediction"))


class FeedbackResponse(BaseModel):
    id: int
    model: str


class ErrorBody(BaseModel):
    error: dict[str, str]
    request_id: str
