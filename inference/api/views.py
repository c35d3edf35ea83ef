"""REST endpoints under /api/v1/: voices, jobs, usage and quota (API key or portal session)."""

from __future__ import annotations

import dataclasses

from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.api_auth import API_AUTHENTICATION, ApiKeyPrincipal, request_tenant
from billing.selectors import quota_get
from billing.services import request_admit
from console.errors import PermissionDenied, VoxfleetError
from inference.api.serializers import (
    JOBS_PAGE_DEFAULT,
    JOBS_PAGE_MAX,
    JobCreateSerializer,
    JobListQuerySerializer,
    JobOutSerializer,
    JobPageSerializer,
    QuotaSerializer,
    UsageQuerySerializer,
    UsageSerializer,
    VoiceCreateSerializer,
    VoiceOutSerializer,
    VoiceRenameSerializer,
)
from inference.audio import MAX_BYTES as AUDIO_MAX_BYTES
from inference.audio.encode import FORMATS as AUDIO_FORMATS
from inference.engines.base import PRESET_VOICES_BY_KEY
from inference.models import JobSource
from inference.selectors import (
    job_audio_read,
    job_get_for_tenant,
    job_list_for_tenant,
    usage_for_tenant,
    voice_get_own,
    voice_list_for_tenant,
    voice_resolve,
)
from inference.services import (
    job_accepted_read,
    job_audio_stream,
    job_cancel,
    job_create,
    voice_create,
    voice_delete,
    voice_rename,
)

ERROR_RESPONSES = {
    400: OpenApiResponse(description='Invalid request: {"error": {"code", "message"}}'),
    401: OpenApiResponse(description="Missing or invalid API key"),
    404: OpenApiResponse(description="Unknown (or another tenant's) object"),
}


class JobPagination(LimitOffsetPagination):
    """?limit (default 50, at most 100; validated by JobListQuerySerializer) and ?offset."""

    default_limit = JOBS_PAGE_DEFAULT
    max_limit = JOBS_PAGE_MAX


class TenantAPIView(APIView):
    """Base: API key or session authentication; every view acts for exactly one tenant."""

    authentication_classes = API_AUTHENTICATION
    permission_classes = [IsAuthenticated]

    def tenant(self, request):
        if not hasattr(request, "_voxfleet_tenant"):
            request._voxfleet_tenant = request_tenant(request)
        return request._voxfleet_tenant

    @staticmethod
    def actor(request) -> dict:
        """Who to record on what this request creates."""
        if isinstance(request.user, ApiKeyPrincipal):
            return {"api_key": request.user.api_key, "created_by": None}
        return {"api_key": None, "created_by": request.user}


class VoiceListCreateView(TenantAPIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        operation_id="voices_list",
        summary="List voices (presets first, then the tenant's own)",
        responses={200: VoiceOutSerializer(many=True), **ERROR_RESPONSES},
        tags=["voices"],
    )
    def get(self, request):
        voices = voice_list_for_tenant(tenant=self.tenant(request))
        return Response(VoiceOutSerializer([VoiceOutSerializer.from_resolved(v) for v in voices], many=True).data)

    @extend_schema(
        operation_id="voices_create",
        summary="Create a voice from prompt audio (multipart upload)",
        request={"multipart/form-data": VoiceCreateSerializer},
        responses={201: VoiceOutSerializer, 409: OpenApiResponse(description="Name taken"), **ERROR_RESPONSES},
        tags=["voices"],
    )
    def post(self, request):
        data = VoiceCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["audio"]
        voice = voice_create(
            tenant=self.tenant(request),
            name=data.validated_data["name"],
            # One byte past the limit is enough for the checks to say "too large"; the upload
            # handler (console.uploads) already stopped anything much bigger while it streamed.
            audio=upload.read(AUDIO_MAX_BYTES + 1),
            transcript=data.validated_data.get("transcript", ""),
            language=data.validated_data.get("language"),
            gender=data.validated_data.get("gender"),
            created_by=self.actor(request)["created_by"],
        )
        resolved = voice_resolve(tenant=voice.tenant, ref=voice.key)
        return Response(VoiceOutSerializer(VoiceOutSerializer.from_resolved(resolved)).data, status=201)


class VoiceDetailView(TenantAPIView):
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    def _preset_guard(self, voice_id: str) -> None:
        if voice_id in PRESET_VOICES_BY_KEY:
            raise PermissionDenied(
                "Preset voices are shared by every tenant and cannot be changed.", code="preset_voice"
            )

    @extend_schema(
        operation_id="voices_retrieve",
        summary="One voice (preset or own)",
        responses={200: VoiceOutSerializer, **ERROR_RESPONSES},
        tags=["voices"],
    )
    def get(self, request, voice_id: str):
        tenant = self.tenant(request)
        if voice_id in PRESET_VOICES_BY_KEY:
            resolved = voice_resolve(tenant=tenant, ref=voice_id)
        else:
            voice = voice_get_own(tenant=tenant, voice_id=voice_id)
            resolved = voice_resolve(tenant=tenant, ref=voice.key)
        return Response(VoiceOutSerializer(VoiceOutSerializer.from_resolved(resolved)).data)

    @extend_schema(
        operation_id="voices_rename",
        summary="Rename one of the tenant's voices",
        request=VoiceRenameSerializer,
        responses={200: VoiceOutSerializer, 403: OpenApiResponse(description="Preset voice"), **ERROR_RESPONSES},
        tags=["voices"],
    )
    def patch(self, request, voice_id: str):
        self._preset_guard(voice_id)
        tenant = self.tenant(request)
        voice = voice_get_own(tenant=tenant, voice_id=voice_id)
        data = VoiceRenameSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        voice = voice_rename(voice=voice, name=data.validated_data["name"])
        resolved = voice_resolve(tenant=tenant, ref=voice.key)
        return Response(VoiceOutSerializer(VoiceOutSerializer.from_resolved(resolved)).data)

    @extend_schema(
        operation_id="voices_delete",
        summary="Delete one of the tenant's voices and its prompt audio",
        responses={204: None, 403: OpenApiResponse(description="Preset voice"), **ERROR_RESPONSES},
        tags=["voices"],
    )
    def delete(self, request, voice_id: str):
        self._preset_guard(voice_id)
        voice_delete(voice=voice_get_own(tenant=self.tenant(request), voice_id=voice_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class JobListCreateView(TenantAPIView):
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    @extend_schema(
        operation_id="jobs_list",
        summary="The tenant's synthesis jobs, newest first",
        parameters=[JobListQuerySerializer],
        responses={200: JobPageSerializer, **ERROR_RESPONSES},
        tags=["jobs"],
    )
    def get(self, request):
        # A plain dict: DRF would read an empty ?status= from a QueryDict as "absent".
        query = JobListQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)  # an unknown status, a bad or oversized limit: 400
        jobs = job_list_for_tenant(tenant=self.tenant(request), status=query.validated_data.get("status"))
        paginator = JobPagination()
        page = paginator.paginate_queryset(jobs, request, view=self)
        return paginator.get_paginated_response(JobOutSerializer(page, many=True).data)

    @extend_schema(
        operation_id="jobs_create",
        summary="Start a synthesis job (asynchronous: poll it, then download the audio)",
        request=JobCreateSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="Retrying with the same key returns the first job; tokens are reserved once.",
            )
        ],
        responses={
            202: JobOutSerializer,
            403: OpenApiResponse(description="Feature not in the plan"),
            429: OpenApiResponse(description="insufficient_quota or rate_limit_exceeded"),
            503: OpenApiResponse(description="No node online"),
            **ERROR_RESPONSES,
        },
        tags=["jobs"],
    )
    def post(self, request):
        tenant = self.tenant(request)
        request_admit(tenant=tenant)
        data = JobCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = job_create(
            tenant=tenant,
            text=data.validated_data["input"],
            voice=data.validated_data["voice"],
            instruction=data.validated_data.get("instructions"),
            seed=data.validated_data.get("seed"),
            speed=data.validated_data.get("speed"),
            idempotency_key=request.headers.get("Idempotency-Key"),
            source=JobSource.API if isinstance(request.user, ApiKeyPrincipal) else JobSource.PORTAL,
            **self.actor(request),
        )
        job = job_accepted_read(job_id=job.pk)  # accepted: a database fault from here is waited out
        response = Response(JobOutSerializer(job).data, status=status.HTTP_202_ACCEPTED)
        response["X-Job-Id"] = str(job.pk)
        response["X-Seed"] = str(job.seed)
        response["Location"] = request.build_absolute_uri(f"{request.path.rstrip('/')}/{job.pk}")
        return response


class JobDetailView(TenantAPIView):
    @extend_schema(
        operation_id="jobs_retrieve",
        summary="Poll one job",
        responses={200: JobOutSerializer, **ERROR_RESPONSES},
        tags=["jobs"],
    )
    def get(self, request, job_id: int):
        return Response(JobOutSerializer(job_get_for_tenant(tenant=self.tenant(request), job_id=job_id)).data)


class JobCancelView(TenantAPIView):
    @extend_schema(
        operation_id="jobs_cancel",
        summary="Cancel an open job; its reserved tokens are released",
        request=None,
        responses={200: JobOutSerializer, 409: OpenApiResponse(description="Already finished"), **ERROR_RESPONSES},
        tags=["jobs"],
    )
    def post(self, request, job_id: int):
        job = job_get_for_tenant(tenant=self.tenant(request), job_id=job_id)
        return Response(JobOutSerializer(job_cancel(job=job)).data)


class AudioNegotiation(DefaultContentNegotiation):
    """Here ``?format=`` names the audio format, not a DRF renderer; errors are always JSON."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class JobAudioView(TenantAPIView):
    content_negotiation_class = AudioNegotiation

    @extend_schema(
        operation_id="jobs_audio",
        summary="A job's audio: downloaded once it succeeded, or streamed (chunked) while it runs",
        parameters=[
            OpenApiParameter(
                "format",
                str,
                enum=list(AUDIO_FORMATS),
                required=False,
                description="wav (default: the stored file) or mp3, opus, aac, flac, pcm at 24 kHz.",
            )
        ],
        responses={
            **{(200, f.content_type): OpenApiTypes.BINARY for f in AUDIO_FORMATS.values()},
            409: OpenApiResponse(description="Not finished"),
            **ERROR_RESPONSES,
        },
        tags=["jobs"],
    )
    def get(self, request, job_id: int):
        job = job_get_for_tenant(tenant=self.tenant(request), job_id=job_id)
        fmt = request.query_params.get("format") or "wav"
        if fmt not in AUDIO_FORMATS:
            raise VoxfleetError(
                f"Unknown format {fmt!r}; use one of {', '.join(AUDIO_FORMATS)}.", code="invalid_format", param="format"
            )
        if not job.is_finished:
            stream = job_audio_stream(job=job, response_format=fmt)
            response = StreamingHttpResponse(stream.chunks, content_type=stream.content_type)
            response["X-Sample-Rate"] = str(stream.sample_rate)
            response["X-Job-Id"] = str(job.pk)
            response["X-Seed"] = str(job.seed)
            response["Cache-Control"] = "no-cache"
            return response
        audio = job_audio_read(job=job, response_format=fmt)
        response = HttpResponse(audio.content, content_type=audio.content_type)
        response["Content-Disposition"] = f'attachment; filename="{job.pk}.{fmt}"'
        response["X-Sample-Rate"] = str(audio.sample_rate)
        response["X-Job-Id"] = str(job.pk)
        response["X-Seed"] = str(job.seed)
        return response


def _quota_dict(tenant) -> dict:
    return dataclasses.asdict(quota_get(tenant=tenant))


class QuotaView(TenantAPIView):
    @extend_schema(
        operation_id="quota_retrieve",
        summary="Tokens the tenant can still spend and when the allowance resets",
        responses={200: QuotaSerializer, **ERROR_RESPONSES},
        tags=["usage"],
    )
    def get(self, request):
        return Response(QuotaSerializer(_quota_dict(self.tenant(request))).data)


class UsageView(TenantAPIView):
    @extend_schema(
        operation_id="usage_retrieve",
        summary="Usage per day in the tenant's time zone (tokens charged, jobs, audio and GPU seconds), and the quota",
        parameters=[UsageQuerySerializer],
        responses={200: UsageSerializer, **ERROR_RESPONSES},
        tags=["usage"],
    )
    def get(self, request):
        query = UsageQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)  # ?days=abc or out of 1..366: 400
        days = query.validated_data["days"]
        tenant = self.tenant(request)
        usage = usage_for_tenant(tenant=tenant, days=days)
        usage["quota"] = _quota_dict(tenant)
        return Response(UsageSerializer(usage).data)
