"""The dashboard as the daemon serves it: its files from the package with the security
headers, nothing else under its paths, the API's CORS still closed, and the two API
additions the page needs (who am I; a live list). The page itself runs in a real browser
in tests/test_dashboard_browser.py."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from api_rig import ApiRig, auth, spec_data
from test_api import problem, read_sse

from canary import dashboard
from canary.model import Phase
from config.settings import Settings

STATIC = Path(dashboard.__file__).parent / "static"
API = "/api/v1"


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/api.js", "text/javascript"),
        ("/ui/chart.js", "text/javascript"),
        ("/ui/style.css", "text/css"),
    ],
)
async def test_each_file_is_served_with_its_type_and_the_security_headers(
    path: str, content_type: str
) -> None:
    async with ApiRig() as rig:
        response = await rig.client.get(path)
        assert response.status == 200
        assert response.content_type == content_type
        csp = response.headers["Content-Security-Policy"]
        assert "unsafe-inline" not in csp
        assert "unsafe-eval" not in csp
        assert "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        name = "index.html" if path == "/" else path.rsplit("/", 1)[1]
        assert await response.read() == (STATIC / name).read_bytes()


def test_the_page_has_no_inline_script_or_style_and_loads_nothing_from_elsewhere() -> None:
    html = (STATIC / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "an inline script"
    assert "<style" not in html
    assert "style=" not in html
    for path in STATIC.iterdir():
        text = path.read_text()
        assert not re.search(r"(src|href)=\"(https?:)?//", text), f"{path.name} loads from afar"
        for markup in (".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write"):
            assert markup not in text, f"{path.name} builds markup from text: {markup}"
        assert "localStorage" not in text, f"{path.name}: the token stays in sessionStorage"


@pytest.mark.parametrize(
    "path", ["/ui/missing.js", "/ui/index.html", "/ui/..%2Fapp.js", "/ui/__init__.py"]
)
async def test_nothing_else_is_served_under_the_dashboards_paths(path: str) -> None:
    async with ApiRig() as rig:
        body = await problem(await rig.client.get(path), 404)
        assert "no dashboard file" in body["detail"] or "no route" in body["detail"]


async def test_the_api_stays_closed_to_other_origins() -> None:
    async with ApiRig() as rig:
        preflight = await rig.client.options(
            f"{API}/rollouts",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert "Access-Control-Allow-Origin" not in preflight.headers
        listed = await rig.client.get(
            f"{API}/rollouts", headers={**auth("reader"), "Origin": "https://evil.example"}
        )
        assert listed.status == 200
        assert "Access-Control-Allow-Origin" not in listed.headers


def test_the_pages_phase_filter_knows_every_phase() -> None:
    script = (STATIC / "app.js").read_text()
    listed = re.search(r"const PHASES = \[[^\]]*\]", script)
    assert listed is not None
    assert set(re.findall(r'"([a-z_]+)"', listed.group(0))) == {p.value for p in Phase}


@pytest.mark.parametrize(
    ("name", "role"), [("reader", "read"), ("ci", "deploy"), ("ana", "operate")]
)
async def test_whoami_names_the_token_and_its_role(name: str, role: str) -> None:
    async with ApiRig() as rig:
        response = await rig.client.get(f"{API}/whoami", headers=auth(name))
        assert await response.json() == {"name": name, "role": role, "anonymous": False}


async def test_whoami_without_a_token_is_anonymous_only_where_the_daemon_allows_it() -> None:
    async with ApiRig() as rig:
        body = await problem(await rig.client.get(f"{API}/whoami"), 401)
        assert "bearer token" in body["detail"]
    async with ApiRig(settings=Settings(allow_anonymous=True)) as rig:
        response = await rig.client.get(f"{API}/whoami")
        assert await response.json() == {"name": "anonymous", "role": "operate", "anonymous": True}


async def test_the_live_list_streams_each_change_of_a_selected_rollout() -> None:
    async with ApiRig() as rig:
        sse = {**auth("reader"), "Accept": "text/event-stream"}
        everything = await rig.client.get(f"{API}/rollouts", headers=sse)
        others = await rig.client.get(f"{API}/rollouts?target=lambda-alias/x/y/z", headers=sse)
        assert everything.headers["Content-Type"] == "text/event-stream"
        r = await rig.submit(spec_data(steps=[{"weight": 50, "bake": "1h"}, {"weight": 100}]))
        messages = await read_sse(
            everything, lambda m: m[-1][2]["rollout"]["phase"] == Phase.BAKING.value
        )
        everything.close()
        assert {m[0] for m in messages} == {"rollout"}
        assert {m[2]["rollout"]["id"] for m in messages} == {r.id}
        assert messages[-1][2]["rollout"]["weight"] == 50
        assert messages[-1][2]["rollout"]["targets"][0]["canary"] == "2"
        with pytest.raises(TimeoutError):  # another target's list hears nothing of it
            async with asyncio.timeout(0.3):
                await others.content.readuntil(b"event: rollout")
        others.close()


async def test_a_live_list_has_no_pages() -> None:
    async with ApiRig() as rig:
        response = await rig.client.get(
            f"{API}/rollouts?limit=5", headers={**auth("reader"), "Accept": "text/event-stream"}
        )
        body = await problem(response, 400)
        assert body["errors"][0]["path"] == "query.limit"
        assert json.dumps(body).count("stream") >= 1
