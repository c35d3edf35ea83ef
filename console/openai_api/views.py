"""OpenAI-compatible endpoints: POST /v1/audio/speech and GET /v1/models.

Existing OpenAI clients work unchanged: ``Authorization: Bearer <api key>``, OpenAI's
request fields (``seed`` added), voices (alloy, nova, … map to presets) and error shape.
The speech call runs as a job on a node like any other, so it is metered, routed and
recorded the same way. As OpenAI's does, it streams the audio as it is synthesized:
chunked for ``stream_format: "audio"`` (the default) and server-sent events for ``"sse"``;
``"stream": false`` (our extension) waits for the whole job and sends one body with its
length. Every format is 24 kHz mono; mp3 is the default. The response carries
``X-Tokens-Charged`` (settled when the stream completes; a client that hangs up early pays
nothing), ``X-Seed`` and ``X-Job-Id``.
"""

from __future__ import annotations

from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import JSONParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.api_auth import ApiKeyAuthentication, request_tenant
from billing.services import request_admit
from console.errors import VoxfleetError
from console.openai_api.db_threads import db_thread_run
from console.openai_api.errors import openai_exception_handler
from inference.audio.encode import DEFAULT_FORMAT, FORMATS
from inference.engines.base import SEED_MAX, SEED_MIN, SPEED_MAX, SPEED_MIN
from inference.services import JobNotSucceeded, Speech, SpeechStream, speech_accept, speech_audio, speech_job_stream

# Our model first; OpenAI's speech model names are accepted as aliases so unchanged
# clients work. All of them run on whatever engine the fleet's nodes have loaded.
MODEL_IDS = ("cosyvoice-3", "tts-1", "tts-1-hd", "gpt-4o-mini-tts")
MODEL_CREATED = 1_735_689_600  # 2025-01-01, a fixed "created" for the listing
RESPONSE_FORMATS = tuple(FORMATS)  # mp3, opus, aac, flac, wav, pcm
STREAM_FORMATS = ("audio", "sse")


class SpeechRequestSerializer(serializers.Serializer):
    model = serializers.CharField(help_text=f"One of {', '.join(MODEL_IDS)}.")
    input = serializers.CharField(allow_blank=True, trim_whitespace=False, help_text="1–200 characters.")
    voice = serializers.JSONField(
        help_text="A voice id or name (GET /api/v1/voices), OpenAI's voice names (alloy, ash, ballad, coral, echo, "
        'fable, onyx, nova, sage, shimmer, verse, marin, cedar), or {"id": "..."}.'
    )
    instructions = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, trim_whitespace=False, help_text="At most 100 characters."
    )
    response_format = serializers.CharField(
        required=False, default=DEFAULT_FORMAT, help_text="mp3 (default), opus, aac, flac, wav or pcm (24 kHz s16le)."
    )
    speed = serializers.FloatField(required=False, allow_null=True, help_text=f"{SPEED_MIN}–{SPEED_MAX}.")
    seed = serializers.IntegerField(
        required=False, allow_null=True, help_text=f"{SEED_MIN}–{SEED_MAX:,}; drawn and returned (X-Seed) if omitted."
    )
    stream_format = serializers.CharField(
        required=False, default="audio", help_text="audio (default: chunked bytes) or sse (speech.audio.delta events)."
    )
    stream = serializers.BooleanField(
        required=False, default=True, help_text="false: wait for the whole audio and send it with its length."
    )

    def validate(self, attrs: dict) -> dict:
        # After every field is valid, in this order; OpenAI's error codes, not DRF's.
        if attrs["model"] not in MODEL_IDS:
            error = _invalid(
                f"The model {attrs['model']!r} does not exist; use one of {', '.join(MODEL_IDS)}.",
                param="model",
                code="model_not_found",
            )
            error.status = 404  # as OpenAI answers an unknown model
            raise error
        attrs["response_format"] = attrs.get("response_format") or DEFAULT_FORMAT
        if attrs["response_format"] not in RESPONSE_FORMATS:
            raise _invalid(
                f"response_format {attrs['response_format']!r} is not supported; use one of "
                f"{', '.join(RESPONSE_FORMATS)}.",
                param="response_format",
                code="unsupported_response_format",
            )
        attrs["stream_format"] = attrs.get("stream_format") or "audio"
        if attrs["stream_format"] not in STREAM_FORMATS:
            raise _invalid("stream_format must be 'audio' or 'sse'.", param="stream_format")
        return attrs


class ModelSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField()
    created = serializers.IntegerField()
    owned_by = serializers.CharField()


class ModelListSerializer(serializers.Serializer):
    object = serializers.CharField()
    data = ModelSerializer(many=True)


class AlwaysJSONNegotiation(DefaultContentNegotiation):
    """OpenAI clients send ``Accept: application/octet-stream`` for audio; errors and listings
    are JSON whatever they accept (audio responses are built directly, not rendered)."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class OpenAIView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    content_negotiation_class = AlwaysJSONNegotiation
    renderer_classes = [JSONRenderer]
    permission_classes = [IsAuthenticated]
    parser_classes = [JSONParser]

    def get_exception_handler(self):
        return openai_exception_handler


def _invalid(message: str, *, param: str, code: str = "invalid_value") -> VoxfleetError:
    return VoxfleetError(message, code=code, param=param)


class SpeechView(OpenAIView):
    def initial(self, request, *args, **kwargs):
        # Authentication and permission checks hit the database, so they run in post() on the
        # long-lived database threads with the rest of the work (see console.openai_api.db_threads).
        self.format_kwarg = self.get_format_suffix(**kwargs)
        request.accepted_renderer, request.accepted_media_type = self.perform_content_negotiation(request)
        request.version, request.versioning_scheme = self.determine_version(request, *args, **kwargs)

    @extend_schema(
        operation_id="audio_speech_create",
        summary="Synthesize speech (OpenAI-compatible; streams the audio as it is synthesized)",
        request=SpeechRequestSerializer,
        responses={
            **{(200, f.content_type): OpenApiTypes.BINARY for f in FORMATS.values()},
            (200, "text/event-stream"): OpenApiTypes.STR,
            400: OpenApiResponse(description="invalid_request_error"),
            401: OpenApiResponse(description="Missing or invalid API key"),
            403: OpenApiResponse(description="Feature not in the plan (feature_not_in_plan)"),
            404: OpenApiResponse(description="Unknown voice"),
            429: OpenApiResponse(description="insufficient_quota or rate_limit_exceeded"),
        },
        tags=["openai"],
    )
    def post(self, request):
        # One trip to a database thread (each is a hand-off between threads on the request's
        # path): who is asking, within their limits, with a valid request, accepted as a job.
        job, fields = db_thread_run(self._accept, request)
        try:
            if not fields["stream"]:
                return _audio_response(
                    speech_audio(job=job, response_format=fields["response_format"], run=db_thread_run)
                )
            stream = speech_job_stream(
                job=job, response_format=fields["response_format"], sse=fields["stream_format"] == "sse"
            )
            return _stream_response(stream)
        except JobNotSucceeded as exc:
            exc.headers.update({"X-Job-Id": str(exc.job_id), "X-Tokens-Charged": "0"})
            raise

    def _accept(self, request) -> tuple:
        """The request admitted and accepted as a job (on a database thread): the job and the fields."""
        self.perform_authentication(request)
        self.check_permissions(request)
        tenant = request_tenant(request)
        request_admit(tenant=tenant)
        data = SpeechRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        job = speech_accept(
            tenant=tenant,
            text=fields["input"],
            voice=fields["voice"],
            instruction=fields.get("instructions"),
            seed=fields.get("seed"),
            speed=fields.get("speed"),
            idempotency_key=request.headers.get("Idempotency-Key"),
            api_key=request.auth,
        )
        return job, fields


def _audio_response(speech: Speech) -> HttpResponse:
    response = HttpResponse(speech.content, content_type=speech.content_type)
    response["X-Tokens-Charged"] = str(speech.tokens)
    response["X-Seed"] = str(speech.seed)
    response["X-Job-Id"] = str(speech.job_id)
    response["X-Sample-Rate"] = str(speech.sample_rate)
    response["X-Engine-Version"] = speech.engine_version
    return response


def _stream_response(stream: SpeechStream) -> StreamingHttpResponse:
    response = StreamingHttpResponse(stream.chunks, content_type=stream.content_type)
    response["X-Tokens-Charged"] = str(stream.tokens)
    response["X-Seed"] = str(stream.seed)
    response["X-Job-Id"] = str(stream.job_id)
    response["X-Sample-Rate"] = str(stream.sample_rate)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies (nginx) must pass each chunk on at once
    return response


class ModelsView(OpenAIView):
    @extend_schema(
        operation_id="models_list",
        summary="Models accepted by /v1/audio/speech (OpenAI-compatible)",
        responses={200: ModelListSerializer},
        tags=["openai"],
    )
    def get(self, request):
        return Response({"object": "list", "data": [_model(m) for m in MODEL_IDS]})


def _model(model_id: str) -> dict:
    return {"id": model_id, "object": "model", "created": MODEL_CREATED, "owned_by": "voxfleet"}


class ModelDetailView(OpenAIView):
    @extend_schema(
        operation_id="models_retrieve",
        summary="One model (OpenAI-compatible)",
        responses={200: ModelSerializer, 404: OpenApiResponse(description="model_not_found")},
        tags=["openai"],
    )
    def get(self, request, model_id: str):
        if model_id not in MODEL_IDS:
            raise VoxfleetError(
                f"The model {model_id!r} does not exist.", code="model_not_found", status=404, param="model"
            )
        return Response(_model(model_id))
