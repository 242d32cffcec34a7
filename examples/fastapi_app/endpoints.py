"""HTTP endpoints. Each gets the ModelService from the container through dependency-injector's wiring."""

# No `from __future__ import annotations` here: dependency-injector and FastAPI read the
# Annotated[..., Depends(Provide[...])] markers from evaluated annotations.

from typing import Annotated, Any

from dependency_injector.wiring import Provide, inject
from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from fastapi_app.containers import ApplicationContainer
from taskmodels.service import ModelService
from taskmodels.types import CompletionResult

__all__ = ["router"]

router = APIRouter()

ServiceDep = Annotated[ModelService, Depends(Provide[ApplicationContainer.models.model_service])]


class PersonaRequest(BaseModel):
    answers: list[str] = Field(min_length=1, description="Survey answers from one segment of users")
    segment: str = "users"


class ClusterRequest(BaseModel):
    answers: list[str] = Field(min_length=2)
    max_clusters: int = Field(default=5, ge=1, le=20)


class SummaryRequest(BaseModel):
    text: str = Field(min_length=1)


class Attempt(BaseModel):
    model_id: str
    outcome: str
    error_class: str | None


class ModelAnswer(BaseModel):
    text: str
    model_id: str
    provider: str
    cost: float
    attempts: list[Attempt]


def _answer(result: CompletionResult) -> ModelAnswer:
    return ModelAnswer(
        text=result.text,
        model_id=result.model_id,
        provider=result.provider,
        cost=result.cost,
        attempts=[Attempt(model_id=a.model_id, outcome=a.outcome, error_class=a.error_class) for a in result.attempts],
    )


def _bullets(answers: list[str]) -> str:
    return "\n".join(f"- {a}" for a in answers)


@router.post("/personas")
@inject
async def generate_persona(body: PersonaRequest, service: ServiceDep) -> ModelAnswer:
    result = await service.complete_with_task_model(
        "persona-generation",
        prompt=f"Write one persona for the segment {body.segment!r} from these answers:\n{_bullets(body.answers)}",
        system_prompt="You write realistic user personas. Use only what the answers support.",
    )
    return _answer(result)


@router.post("/personas/cluster")
@inject
async def cluster_answers(body: ClusterRequest, service: ServiceDep) -> ModelAnswer:
    result = await service.complete_with_task_model(
        "clustering",
        prompt=f"Cluster these answers into at most {body.max_clusters} groups:\n{_bullets(body.answers)}",
        system_prompt="You are a helpful assistant that clusters personas into groups.",
    )
    return _answer(result)


@router.post("/summaries")
@inject
async def summarise(body: SummaryRequest, service: ServiceDep) -> ModelAnswer:
    result = await service.complete_with_task_model(
        "summarisation",
        prompt=f"Summarise this interview transcript:\n{body.text}",
        system_prompt="You are concise and keep the interviewee's own words where they matter.",
    )
    return _answer(result)


@router.get("/health/models")
@inject
async def model_health(service: ServiceDep) -> dict[str, Any]:
    """Each model's circuit breaker, and the calls, tokens and cost so far."""
    return {"breakers": (await service.health())["models"], "totals": service.totals()}
