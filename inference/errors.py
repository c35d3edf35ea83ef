"""Inference's business errors (one ``VoxfleetError`` family; console.errors renders them)."""

from __future__ import annotations

from console.errors import Conflict, VoxfleetError


class NoNodeAvailable(VoxfleetError):
    """No online node may take this tenant's job right now (nothing was reserved)."""

    code = "no_node_available"
    status = 503
    openai_type = "server_error"


class JobNotCancellable(Conflict):
    """The job already finished; only open jobs can be cancelled."""

    code = "job_not_cancellable"


class JobNotSucceeded(VoxfleetError):
    """An accepted job ended without audio (cancelled, timed out, failed); nothing was charged."""

    code = "synthesis_failed"
    status = 500
    openai_type = "server_error"

    def __init__(self, message: str, *, job_id: int | None = None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.job_id = job_id


class JobTimedOut(JobNotSucceeded):
    """The job did not finish before its deadline; it was failed and its tokens released."""

    code = "job_timed_out"
    status = 504


class JobCancelled(JobNotSucceeded, Conflict):
    """The job was cancelled (by the customer or an operator) before it produced audio."""

    code = "job_cancelled"
    status = 409
    openai_type = Conflict.openai_type


class JobFailed(JobNotSucceeded):
    """Synthesis failed (engine error, node lost twice, no node, dispatch failure)."""


class NotYourJob(VoxfleetError):
    """A GPU host reported on a job that is not running on it in that attempt (refused, logged).

    Other nodes' jobs, a stale attempt, a job the console already moved: nothing changes.
    """

    code = "not_your_job"
    status = 409

    def __init__(self, message: str, *, job_id: int, attempt: int, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.job_id = job_id
        self.attempt = attempt
