"""The app's shared objects as typed dependencies: a handler declares ``settings: SettingsDep`` and the like.

``create_app`` keeps them on ``app.state``; these read them from there, so that no handler does.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine

from api.compute import ComputePool
from api.jobs.executor import ClusterState
from api.metrics import Metrics
from api.settings import Settings


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_compute(request: Request) -> ComputePool:
    compute: ComputePool = request.app.state.compute
    return compute


def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


def get_engine(request: Request) -> Engine:
    """The database engine the app's lifespan created and migrated (``api.store.base``)."""
    engine: Engine = request.app.state.engine
    return engine


def get_cluster(request: Request) -> ClusterState | None:
    """Whether the jobs' Dask cluster is connected ("connected", "disconnected"); None without a cluster."""
    state: ClusterState | None = request.app.state.jobs.executor.cluster
    return state


def is_ready(request: Request) -> bool:
    """Whether the app's lifespan has started it and not yet stopped it."""
    return bool(getattr(request.app.state, "ready", False))


SettingsDep = Annotated[Settings, Depends(get_settings)]
ComputeDep = Annotated[ComputePool, Depends(get_compute)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
EngineDep = Annotated[Engine, Depends(get_engine)]
ReadyDep = Annotated[bool, Depends(is_ready)]
ClusterDep = Annotated[ClusterState | None, Depends(get_cluster)]
