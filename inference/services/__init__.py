"""Inference writes, by subject (keyword-only functions named <entity>_<action>).

- ``voices``: a tenant's cloned voices.
- ``jobs``: the quote (one set of request rules for the API and the playground), acceptance
  (reserve tokens, take a slot, queue on a node), cancel and fail.
- ``dispatch``: which node runs a job, handing it over, running it on the node, closing it.
- ``hosts``: jobs a GPU host runs with no database (protocol v3): claim, leases, its audio, its reports.
- ``recovery``: requeue off a dead node or an expired lease, expiry past the deadline.
- ``speech``: a request answered while the client waits, streamed or whole (the OpenAI-compatible endpoint).

Every public name is re-exported here, so ``from inference.services import job_create``
works whatever module it lives in. Errors live in ``inference.errors`` (re-exported too).
"""

from inference.errors import (
    JobCancelled,
    JobFailed,
    JobNotCancellable,
    JobNotSucceeded,
    JobTimedOut,
    NoNodeAvailable,
    NotYourJob,
)
from inference.services.dispatch import (
    SYNTHESIZE_TASK,
    job_dispatch,
    job_execute,
    job_execute_local,
    job_message,
    job_node_pick,
    job_output_path,
)
from inference.services.hosts import (
    CLOSED_REFUSED,
    AudioRefused,
    HostAudio,
    HostClaim,
    HostRenewal,
    JobClosed,
    host_job_done,
    host_job_fail,
    host_job_renew,
    host_job_start,
)
from inference.services.jobs import (
    IDEMPOTENCY_KEY_MAX,
    JOB_TIMEOUT_S,
    JobQuote,
    job_accepted_read,
    job_cancel,
    job_create,
    job_fail,
    job_quote,
)
from inference.services.recovery import (
    MAX_REQUEUES,
    REPUBLISH_AFTER_S,
    RequeueOutcome,
    job_requeue_from_node,
    job_requeue_unheld,
    jobs_dispatch_waiting,
    jobs_expire_overdue,
    jobs_reclaim_expired_leases,
    jobs_recover,
    jobs_republish_stale,
)
from inference.services.speech import (
    Speech,
    SpeechStream,
    job_audio_chunks,
    job_audio_stream,
    speech_accept,
    speech_audio,
    speech_job_stream,
    speech_stream,
    speech_synthesize,
)
from inference.services.voices import VOICE_NAME_MAX, voice_create, voice_delete, voice_rename

__all__ = [
    "CLOSED_REFUSED",
    "AudioRefused",
    "HostAudio",
    "HostClaim",
    "HostRenewal",
    "JobClosed",
    "NotYourJob",
    "host_job_done",
    "host_job_fail",
    "host_job_renew",
    "host_job_start",
    "IDEMPOTENCY_KEY_MAX",
    "JOB_TIMEOUT_S",
    "MAX_REQUEUES",
    "REPUBLISH_AFTER_S",
    "SYNTHESIZE_TASK",
    "VOICE_NAME_MAX",
    "JobCancelled",
    "JobFailed",
    "JobNotCancellable",
    "JobNotSucceeded",
    "JobQuote",
    "JobTimedOut",
    "NoNodeAvailable",
    "RequeueOutcome",
    "Speech",
    "job_accepted_read",
    "job_cancel",
    "job_create",
    "job_dispatch",
    "job_execute",
    "job_execute_local",
    "job_message",
    "job_fail",
    "job_node_pick",
    "job_output_path",
    "job_quote",
    "job_requeue_from_node",
    "job_requeue_unheld",
    "jobs_dispatch_waiting",
    "jobs_expire_overdue",
    "jobs_reclaim_expired_leases",
    "jobs_recover",
    "jobs_republish_stale",
    "speech_accept",
    "speech_audio",
    "speech_job_stream",
    "speech_stream",
    "speech_synthesize",
    "SpeechStream",
    "job_audio_chunks",
    "job_audio_stream",
    "voice_create",
    "voice_delete",
    "voice_rename",
]
