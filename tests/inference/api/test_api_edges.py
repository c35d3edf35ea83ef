"""API edges: one JSON error shape for every 404/400 (unknown URLs too), query parameters
validated (400), a page-size cap, and Swagger UI served locally."""

import pytest
from django.test import Client


@pytest.fixture
def api(make_tenant):
    tenant = make_tenant("pro")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {tenant.test_api_key}")
    client.tenant = tenant
    return client


@pytest.mark.parametrize(
    "url", ["/api/v1/jobs/abc", "/api/v1/nothing", "/api/v2/jobs", "/api/v1/jobs/1/nope", "/api/v1/voices/x/y"]
)
def test_unknown_api_urls_answer_json_404(api, url, settings):
    settings.DEBUG = True  # the URLconf used to be printed under DEBUG
    r = api.get(url)
    assert r.status_code == 404
    assert r["Content-Type"] == "application/json"
    assert r.json()["error"]["code"] == "not_found"


def test_unknown_openai_urls_answer_openai_shaped_404(api):
    r = api.post("/v1/chat/completions", {}, content_type="application/json")
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "not_found" and "message" in error


def test_a_missing_job_is_a_json_404(api):
    r = api.get("/api/v1/jobs/999999")
    assert r.status_code == 404 and r.json()["error"]["code"]


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/v1/jobs?status=AAA", "status"),
        ("/api/v1/jobs?limit=1000000", "limit"),
        ("/api/v1/jobs?limit=0", "limit"),
        ("/api/v1/jobs?limit=abc", "limit"),
        ("/api/v1/jobs?offset=-1", "offset"),
        ("/api/v1/usage?days=abc", "days"),
        ("/api/v1/usage?days=0", "days"),
        ("/api/v1/usage?days=367", "days"),
    ],
)
def test_invalid_query_parameters_are_400(api, url, field):
    r = api.get(url)
    assert r.status_code == 400, r.content
    body = r.json()["error"]
    assert body["code"] == "invalid_request" and field in body["fields"]


def test_jobs_page_is_capped_and_pages(api):
    r = api.get("/api/v1/jobs?limit=100")
    assert r.status_code == 200 and r.json()["results"] == []
    r = api.get("/api/v1/usage?days=7")
    assert r.status_code == 200 and r.json()["since"]


def test_malformed_json_body_is_a_json_400(api):
    r = api.post("/api/v1/jobs", "{not json", content_type="application/json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "parse_error"


def test_swagger_ui_is_served_locally(client, db):
    r = client.get("/api/docs/")
    assert r.status_code == 200
    page = r.content.decode()
    assert "cdn.jsdelivr.net" not in page and "unpkg.com" not in page and "swagger-ui-dist@" not in page
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    asset = client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    assert asset.status_code == 200


def test_schema_states_limits_enums_errors_and_binary_audio(client, db):
    import yaml

    schema = yaml.safe_load(client.get("/api/schema/").content)
    comps = schema["components"]["schemas"]
    job = comps["JobCreateRequest"]["properties"]
    assert (job["seed"]["minimum"], job["seed"]["maximum"]) == (1, 100_000_000)
    assert (job["speed"]["minimum"], job["speed"]["maximum"]) == (0.25, 4.0)
    assert comps["VoiceCreateRequest"]["properties"]["audio"]["format"] == "binary"
    params = {p["name"]: p for p in schema["paths"]["/api/v1/jobs"]["get"]["parameters"]}
    assert params["limit"]["schema"]["maximum"] == 100
    assert "succeeded" in str(params["status"]["schema"])
    days = next(p for p in schema["paths"]["/api/v1/usage"]["get"]["parameters"] if p["name"] == "days")
    assert (days["schema"]["minimum"], days["schema"]["maximum"]) == (1, 366)
    create = schema["paths"]["/api/v1/jobs"]["post"]["responses"]
    for status in ("400", "401", "403", "413", "429", "503"):
        assert create[status]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert not any(path.startswith("/ops/") for path in schema["paths"])
