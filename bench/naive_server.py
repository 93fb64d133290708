"""The naive serving baseline for bench/serve_load.py: FastAPI calling a transformers
pipeline once per request, as many quick-start guides do.

    python bench/naive_server.py MODEL_DIR PORT
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from transformers import pipeline

classifier = pipeline("text-classification", model=sys.argv[1], device="cpu")
app = FastAPI()


class Body(BaseModel):
    texts: list[str]


@app.post("/predict")
def predict(body: Body) -> dict:
    return {"predictions": classifier(body.texts)}


@app.get("/readyz")
def ready() -> dict:
    return {"status": "ready"}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
