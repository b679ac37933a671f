"""One exception hierarchy for everything a call can raise, shaped after openai-python's.

JacspecError
├── JobError                    a job ended without a report (cancelled), or wait() ran out of time
│   └── JobTimeoutError
├── APIConnectionError          the server could not be reached
│   └── APITimeoutError         ... or did not answer in time
└── APIStatusError              it answered 4xx/5xx; carries the problem+json fields
    ├── BadRequestError             400
    ├── AuthenticationError         401
    ├── PermissionDeniedError       403
    ├── NotFoundError               404
    ├── ConflictError               409 (e.g. cancelling a finished job)
    ├── ContentTooLargeError        413
    ├── UnprocessableEntityError    422
    ├── RateLimitError              429
    └── InternalServerError         5xx
"""

from __future__ import annotations

import httpx

from jacspec.models import FieldError, Job, Problem


class JacspecError(Exception):
    """The base of every error this package raises."""


class JobError(JacspecError):
    """A job gave no report: it was cancelled (a failed job raises the APIStatusError of its ``error`` instead).
    ``job`` is the last state seen (a :class:`~jacspec.models.Job`)."""

    def __init__(self, message: str, job: Job) -> None:
        super().__init__(message)
        self.job = job


class JobTimeoutError(JobError, TimeoutError):
    """``jobs.wait`` ran out of its ``timeout`` before the job finished (the job goes on)."""


class APIConnectionError(JacspecError):
    """The server could not be reached. The message names the URL tried; ``request`` is the request sent."""

    def __init__(
        self, message: str | None = None, *, request: httpx.Request, cause: BaseException | None = None
    ) -> None:
        if message is None:
            reason = str(cause).strip().splitlines()[0] if cause is not None and str(cause).strip() else ""
            message = f"could not connect to {request.url}" + (f": {reason}" if reason else "")
        super().__init__(message)
        self.request = request


class APITimeoutError(APIConnectionError):
    """The server did not answer within the client's ``timeout``."""

    def __init__(self, request: httpx.Request) -> None:
        super().__init__(f"no answer from {request.url} in time (the client's timeout)", request=request)


class APIStatusError(JacspecError):
    """An error answer. ``problem`` holds the RFC 9457 body (type, title, status, detail, errors, request_id)."""

    status_code: int

    def __init__(self, response: httpx.Response, problem: Problem) -> None:
        super().__init__(f"{problem.status} {problem.title}: {problem.detail or ''}".rstrip(": "))
        self.response = response
        self.status_code = response.status_code
        self.problem = problem

    @property
    def type(self) -> str:
        return self.problem.type

    @property
    def title(self) -> str:
        return self.problem.title

    @property
    def detail(self) -> str | None:
        return self.problem.detail

    @property
    def request_id(self) -> str | None:
        """The server's id for the failed request (the problem's ``request_id``, else ``X-Request-ID``)."""
        return self.problem.request_id or self.response.headers.get("x-request-id")

    @property
    def errors(self) -> list[FieldError]:
        """Each offending field, with a JSON pointer into the request body."""
        return self.problem.errors or []


class BadRequestError(APIStatusError):
    status_code = 400


class AuthenticationError(APIStatusError):
    status_code = 401


class PermissionDeniedError(APIStatusError):
    status_code = 403


class NotFoundError(APIStatusError):
    status_code = 404


class ConflictError(APIStatusError):
    status_code = 409


class ContentTooLargeError(APIStatusError):
    status_code = 413


class UnprocessableEntityError(APIStatusError):
    status_code = 422


class RateLimitError(APIStatusError):
    status_code = 429


class InternalServerError(APIStatusError):
    pass


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: ContentTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_error(response: httpx.Response) -> APIStatusError:
    """The exception for an error response, its problem+json parsed (or made up from the status line)."""
    problem = _problem(response)
    if response.status_code >= 500:
        return InternalServerError(response, problem)
    return _BY_STATUS.get(response.status_code, APIStatusError)(response, problem)


def _problem(response: httpx.Response) -> Problem:
    try:
        return Problem.model_validate_json(response.content)
    except ValueError:
        return Problem(
            title=response.reason_phrase or "Error", status=response.status_code, detail=response.text[:500] or None
        )


def problem_error(problem: Problem, response: httpx.Response) -> APIStatusError:
    """The exception the synchronous route would have raised with ``problem`` (a failed job's ``error``):
    its class by ``problem.status``, its ``response`` an answer of that status carrying the problem, made for
    the request that read the job (whose ``X-Request-ID`` it keeps unless the problem has its own)."""
    headers = {"content-type": "application/problem+json"}
    if "x-request-id" in response.headers:
        headers["x-request-id"] = response.headers["x-request-id"]
    answer = httpx.Response(
        problem.status,
        headers=headers,
        content=problem.model_dump_json(exclude_none=True).encode(),
        request=response.request,
    )
    return status_error(answer)
