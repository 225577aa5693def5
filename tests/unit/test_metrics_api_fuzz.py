"""Fuzz the metrics and profile routes from the OpenAPI spec (in process, bounded):
whatever is sent, no server error; without the token, nothing changes."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from shoal.control.api import create_app
from shoal.control.config import ControlConfig
from shoal.control.metrics import Metrics
from shoal.control.plane import ControlPlane

_home = Path(tempfile.mkdtemp(prefix="shoal-metrics-fuzz-"))
atexit.register(shutil.rmtree, _home, True)
# the in-process client says "Host: testserver": a name the dashboard guard must allow
PLANE = ControlPlane.open(ControlConfig(home=_home, watch_heartbeat=0.05,
                                        dashboard_hosts=("testserver",)))
METRICS = Metrics.attach(PLANE)
APP = create_app(PLANE)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
schema = schema.include(path_regex=r"^/api/v1/(stat|edges|routes|series|overview|metrics|profiles)")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error_with_the_token(case):
    case.call_and_validate(headers={"authorization": f"Bearer {PLANE.token}"},
                           checks=[not_a_server_error])


@schema.parametrize()
@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
def test_nothing_without_the_token(case):
    before = dict(METRICS.profiles.profiles)
    response = case.call(headers={"authorization": "Bearer wrong"})
    assert response.status_code in (400, 401, 403, 404, 405, 413, 422), response.text
    assert METRICS.profiles.profiles == before
