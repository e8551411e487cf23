"""GET /metrics: Prometheus text that the official parser reads, with the expected series."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.admin import Admin


async def _scrape(admin: Admin) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    async with admin.client.get(admin.url("/metrics")) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await response.text()
    return {
        family.name: [(s.name, s.labels, s.value) for s in family.samples]
        for family in text_string_to_metric_families(text)
    }


async def test_metrics_parse_and_count_requests_by_route(admin: Admin) -> None:
    """Requests are counted by route and status class, with a latency histogram."""
    proxy = admin.proxy
    await proxy.form_login("bob", "builder-22")  # GET the login page, POST the login
    async with proxy.client.get(proxy.url("/some/page")) as response:
        assert response.status == 200
    families = await _scrape(admin)

    requests = {
        (labels["route"], labels["outcome"]): value
        for _, labels, value in families["authshim_requests"]
    }
    assert requests[("/accounts/login", "3xx")] == 1
    assert requests[("passthrough", "2xx")] == 2  # the login page and /some/page
    buckets = [
        (labels["le"], value)
        for name, labels, value in families["authshim_request_duration_seconds"]
        if name.endswith("_bucket") and labels["route"] == "/accounts/login"
    ]
    assert buckets[-1] == ("+Inf", 1.0) and [v for _, v in buckets] == sorted(v for _, v in buckets)
    assert families["authshim_migrated_users"][0][2] == 1
    assert ("authshim_users", {"source": "login"}, 1.0) in families["authshim_users"]
    assert families["authshim_password_queue_depth"][0][2] == 0
    events = {labels["name"]: value for _, labels, value in families["authshim_events"]}
    assert events["login.captured"] == 1
    mode = {labels["mode"]: value for _, labels, value in families["authshim_mode"]}
    assert mode == {"migrate": 1, "cutover": 0}


async def test_upstream_failures_are_counted(admin: Admin, legacy_server) -> None:  # type: ignore[no-untyped-def]
    """authshim's own 502 for an unreachable legacy app counts as an upstream error."""
    await legacy_server.close()
    async with admin.proxy.client.get(admin.proxy.url("/anything")) as response:
        assert response.status == 502
    await admin.flush()
    families = await _scrape(admin)
    errors = {labels["status"]: value for _, labels, value in families["authshim_upstream_errors"]}
    assert errors == {"502": 1, "504": 0}
    status, stats = await admin.call("GET", "/admin/stats")
    assert status == 200 and stats["upstream_errors"] == 1
