"""A router artifact's ``manifest.json``, parsed once into a typed model.

Only the fields modelmix reads are declared; the rest (learner settings, training-data
summary, CV metrics) stay as written, and unknown keys are kept, so an artifact written by
a newer minor version still loads.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ARTIFACT_FORMAT", "FORMAT_VERSION", "Manifest"]

#: ``manifest.json``'s ``format`` value.
ARTIFACT_FORMAT = "modelmix-router"
#: The artifact layout this modelmix reads and writes.
FORMAT_VERSION = 1


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class EmbeddingInfo(_Open):
    max_tokens: int = Field(gt=0)


class FeaturesInfo(_Open):
    embedding: EmbeddingInfo
    lexical: list[str] = Field(default_factory=list)
    structure: list[str] = Field(default_factory=list)


class LearnerInfo(_Open):
    name: str


class TrainingData(_Open):
    rows: int = 0
    files: list[dict[str, Any]] = Field(default_factory=list)
    #: prompts on which the weak and strong model disagree (None: no pair)
    disagreements: int | None = None


class Manifest(_Open):
    """The manifest of a router artifact (see docs/router.md for every field)."""

    format: Literal["modelmix-router"]
    format_version: int
    model_names: list[str] = Field(min_length=1)
    weak_model: str | None = None
    strong_model: str | None = None
    learner: LearnerInfo
    features: FeaturesInfo
    training_data: TrainingData | None = None
    cv_metrics: dict[str, Any] | None = None

    @property
    def training_hashes(self) -> set[str]:
        """SHA-256 of each training file (``training_data.files[].sha256``)."""
        data = self.training_data
        return {str(f["sha256"]) for f in (data.files if data else []) if f.get("sha256")}
