"""The web page in a real headless Chromium, and the map views it uses (SVG via pyproj, GeoJSON)."""
from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest

from conftest_server import servers  # noqa: F401,F811 - pytest fixtures
from conftest_server import MODEL, place_records, start_http

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
INSTALL_HINT = ("the browser test needs Debian's Chromium and Playwright for Python: "
                "`apt-get install -y chromium` (or `make browser`) and `pip install playwright` "
                "(do not run `playwright install`; the test launches /usr/bin/chromium)")
SVG_NS = "{http://www.w3.org/2000/svg}"


def test_page_is_self_contained(servers):
    html = httpx.get(servers.http_url + "/").text
    assert "<script>" in html and "id=\"sample\"" in html
    for external in ("http://", "https://", "//cdn", "@import", "url("):
        assert external not in html.replace("http://www.w3.org", ""), external


def test_map_svg_is_projected_and_shows_the_path(servers):
    samples = place_records(30, seed=2)
    path = place_records(4, seed=3)
    r = httpx.post(f"{servers.http_url}/v1/models/{MODEL}:map", json={"records": samples, "path": path}, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    svg = ET.fromstring(r.text)
    assert svg.get("data-crs") == "EPSG:32618"  # Vermont lies in UTM zone 18N
    assert len(svg.findall(f".//{SVG_NS}circle[@class='sample']")) == 30
    line = svg.find(f".//{SVG_NS}polyline[@id='path']")
    assert line is not None and len(line.get("points").split()) == 4
    # north is up and east is right: Burlington (NW) is left of and above Brattleboro (SE)
    two = [{"city": "B", "lat": 44.4759, "lon": -73.2121}, {"city": "Br", "lat": 42.8509, "lon": -72.5579}]
    svg = ET.fromstring(httpx.post(f"{servers.http_url}/v1/models/{MODEL}:map", json={"records": [],
                                   "path": two}).text)
    (x0, y0), (x1, y1) = [tuple(map(float, p.split(","))) for p in
                          svg.find(f".//{SVG_NS}polyline[@id='path']").get("points").split()]
    assert x0 < x1 and y0 < y1
    # without records it samples n itself
    r = httpx.post(f"{servers.http_url}/v1/models/{MODEL}:map", json={"n": 12, "seed": 1}, timeout=30)
    assert len(ET.fromstring(r.text).findall(f".//{SVG_NS}circle[@class='sample']")) == 12


def test_map_picks_the_projection_from_the_data():
    from synth.server.geo import Point, choose_crs

    assert choose_crs([Point(-73.2, 44.5)]).to_epsg() == 32618
    assert choose_crs([Point(151.2, -33.9)]).to_epsg() == 32756  # Sydney: UTM 56S
    wide = choose_crs([Point(-120, 40), Point(-75, 40)])  # a continent: no single UTM zone fits
    assert wide.to_epsg() is None and "Lambert Azimuthal Equal Area" in wide.to_wkt()


def test_geojson_path_has_geodesic_step_distances(servers):
    from pyproj import Geod

    a, b = place_records(2, seed=4)
    r = httpx.post(f"{servers.http_url}/v1/models/{MODEL}:geojson",
                   json={"from": a, "to": b, "steps": 6}, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/geo+json")
    fc = r.json()
    line, points = fc["features"][0], fc["features"][1:]
    assert line["geometry"]["type"] == "LineString" and len(points) == 6
    coords = line["geometry"]["coordinates"]
    geod = Geod(ellps="WGS84")
    for i in range(1, 6):
        expected = geod.inv(coords[i - 1][0], coords[i - 1][1], coords[i][0], coords[i][1])[2]
        assert points[i]["properties"]["distance_from_previous_m"] == pytest.approx(expected)
    assert line["properties"]["total_distance_m"] == pytest.approx(sum(line["properties"]["step_distances_m"]))
    interp = httpx.post(f"{servers.http_url}/v1/models/{MODEL}:interpolate",
                        json={"from": a, "to": b, "steps": 6}).json()["records"]
    assert [p["properties"]["record"] for p in points] == interp


def test_map_needs_lat_lon_fields(servers, tmp_path):
    from synth.server.rest.app import create_app
    from synth import store
    from synth.model_config import ModelConfig
    from synth.model import Model
    from synth.service import ModelRegistry, SynthService

    proto = 'syntax = "proto3"; message Plain { string word = 1; }'
    model = Model.create(proto, "Plain", records=[{"word": "a"}], config=ModelConfig(latent_dim=8, char_dim=4))
    store.save(model, tmp_path / "plain")
    url, stop = start_http(create_app(SynthService(ModelRegistry(tmp_path, include_bundled=False))))
    try:
        r = httpx.post(url + "/v1/models/plain:map", json={"n": 3})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_argument"
        assert httpx.get(url + "/v1/models/plain").json()["geo"] is None
    finally:
        stop()


def _browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(INSTALL_HINT + " -- playwright is not installed")
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail(INSTALL_HINT + f" -- {CHROMIUM} is missing")
    return sync_playwright


def test_browser_samples_and_draws_the_interpolation(servers):
    sync_playwright = _browser()
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        errors: list[str] = []
        page = browser.new_page()
        try:
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            outside: list[str] = []
            page.on("request", lambda req: None if req.url.startswith(servers.http_url) or
                    req.url.startswith(("blob:", "data:")) else outside.append(req.url))
            page.goto(servers.http_url + "/")
            page.wait_for_selector(f"#model option[value='{MODEL}']", state="attached")
            page.fill("#n", "12")
            page.fill("#seed", "5")
            page.click("#sample")
            page.wait_for_function("document.querySelectorAll('#samples tbody tr').length === 12")
            page.wait_for_selector("#map svg circle.sample", state="attached")
            assert page.locator("#map svg circle.sample").count() == 12
            cells = page.locator("#samples thead th").all_inner_texts()
            assert cells == ["#", "city", "postcode", "lat", "lon"]

            rows = page.locator("#samples tbody tr")
            rows.nth(0).click()
            rows.nth(7).click()
            assert page.locator("#samples tbody tr.selected").count() == 2
            page.fill("#steps", "6")
            page.click("#interpolate")
            page.wait_for_selector("#map svg polyline#path", state="attached")  # may be tiny: untrained model
            page.wait_for_function("document.querySelectorAll('#path tbody tr').length === 6")
            points = page.locator("#map svg polyline#path").get_attribute("points")
            assert len(points.split()) == 6

            with page.expect_download() as download:
                page.click("#dl-jsonl")
            lines = Path(download.value.path()).read_text().splitlines()
            assert len(lines) == 12  # the same seed: the records in the table
            assert page.locator("#error").inner_text() == ""
            assert not errors, errors
            assert not outside, f"the page fetched outside the server: {outside}"
        except PlaywrightTimeout as e:  # say what the page showed, not only which wait timed out
            pytest.fail(f"{e}\npage error box: {page.locator('#error').inner_text()!r}\n"
                        f"page errors: {errors}\nmap: {page.locator('#map').inner_html()[:2000]}")
        finally:
            browser.close()


def test_browser_sends_the_api_token_from_the_token_field(servers):
    """A server with API tokens: the page asks for one, keeps it in sessionStorage, sends it as a bearer."""
    from synth.server.auth import AccessPolicy
    from synth.server.rest.app import create_app

    token = "web-page-token-0123456789abcdef"
    url, stop = start_http(create_app(servers.service, access=AccessPolicy.from_tokens([(token, False)])))
    sync_playwright = _browser()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page()
                sent: list[str | None] = []
                page.on("request", lambda req: sent.append(req.headers.get("authorization"))
                        if "/v1/" in req.url else None)
                page.goto(url + "/")
                page.wait_for_function("document.getElementById('error').textContent.includes('unauthenticated')")
                assert "token" in page.locator("#error").inner_text()
                page.fill("#token", token)
                page.locator("#token").dispatch_event("change")
                page.wait_for_selector(f"#model option[value='{MODEL}']", state="attached")
                assert page.evaluate("sessionStorage.getItem('protosynth-token')") == token
                page.fill("#n", "4")
                page.click("#sample")
                page.wait_for_function("document.querySelectorAll('#samples tbody tr').length === 4")
                assert sent[0] is None and sent[-1] == f"Bearer {token}"
                page.reload()  # the same tab: the token is still there, and used at once
                page.wait_for_selector(f"#model option[value='{MODEL}']", state="attached")
                assert page.input_value("#token") == token and page.locator("#error").inner_text() == ""
            finally:
                browser.close()
    finally:
        stop()
