"""jacspec: see vanishing and exploding gradients before they waste a training run.

    import jacspec
    with jacspec.Client() as client:
        report = client.analyze({"activation": "tanh",
                                 "init": {"widths": [256] * 31, "scheme": "orthogonal", "gain": 0.5}})
    print(report.summary.verdict)          # vanishing

See sdk/README.md and docs/sdk.md for the client, its options and raw responses, its errors, the numpy and
torch builders and the command line.
"""

from jacspec._client import NOT_GIVEN, AsyncClient, Client, NotGiven
from jacspec._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ContentTooLargeError,
    InternalServerError,
    JacspecError,
    JobError,
    JobTimeoutError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UnprocessableEntityError,
)
from jacspec._response import APIResponse
from jacspec._version import __version__
from jacspec.models import AnalysisReport, AnalysisRequest, Job, Network, Run, SurveyReport, Tensor

__all__ = [
    "NOT_GIVEN",
    "APIConnectionError",
    "APIResponse",
    "APIStatusError",
    "APITimeoutError",
    "AnalysisReport",
    "AnalysisRequest",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "ConflictError",
    "ContentTooLargeError",
    "InternalServerError",
    "JacspecError",
    "Job",
    "JobError",
    "JobTimeoutError",
    "Network",
    "NotFoundError",
    "NotGiven",
    "PermissionDeniedError",
    "RateLimitError",
    "Run",
    "SurveyReport",
    "Tensor",
    "UnprocessableEntityError",
    "__version__",
]
