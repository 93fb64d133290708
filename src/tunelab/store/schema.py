"""SQLAlchemy 2 models of the store."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

STAGES = ("candidate", "production", "archived")


def now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Run(Base):
    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    path: Mapped[str] = mapped_column(String(1000), unique=True)
    task: Mapped[str] = mapped_column(String(100))
    base_model: Mapped[str] = mapped_column(String(500))
    method: Mapped[str] = mapped_column(String(100))
    metric: Mapped[str] = mapped_column(String(100))
    metric_value: Mapped[float] = mapped_column(Float)
    # the run record (tunelab.record.RunRecord) as JSON; the column keeps its first name
    record_json: Mapped[dict[str, Any]] = mapped_column("summary", JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    metrics: Mapped[list[Metric]] = relationship(back_populates="run",
                                                 cascade="all, delete-orphan")
    datasets: Mapped[list[DatasetFingerprint]] = relationship(cascade="all, delete-orphan")
    versions: Mapped[list[ModelVersion]] = relationship(back_populates="run",
                                                        cascade="all, delete-orphan")

    @property
    def record(self) -> Any:
        from tunelab.record import RunRecord

        return RunRecord.model_validate(self.record_json)


class Metric(Base):
    __tablename__ = "metrics"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    split: Mapped[str] = mapped_column(String(50))
    name: Mapped[str] = mapped_column(String(200))
    value: Mapped[float] = mapped_column(Float)
    run: Mapped[Run] = relationship(back_populates="metrics")


class DatasetFingerprint(Base):
    __tablename__ = "dataset_fingerprints"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    split: Mapped[str] = mapped_column(String(50))
    source: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64), index=True)


class ModelVersion(Base):
    __tablename__ = "model_versions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    stage: Mapped[str] = mapped_column(String(20), index=True, default="candidate")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    promoted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    run: Mapped[Run] = relationship(back_populates="versions")


class Feedback(Base):
    """A correction sent to the service: what the model said and what was right."""

    __tablename__ = "feedback"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_path: Mapped[str] = mapped_column(String(1000), index=True)
    model_version: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    predicted: Mapped[str | None] = mapped_column(String(200), nullable=True)
    correct_label: Mapped[str] = mapped_column(String(200))
    request_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    key_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class ApiKey(Base):
    """A service key: only a salted hash of its secret. Revoked keys stay, for the record."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    salt: Mapped[str] = mapped_column(String(32))
    digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AuditEvent(Base):
    """Who did what: a key created or revoked (named by its label, never the key), a model
    promoted or rolled back, a retrain started."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(50), index=True)
    target: Mapped[str] = mapped_column(String(1000))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
