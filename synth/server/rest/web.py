"""The browser page at `/`, and the map views it uses (`:map` SVG, `:geojson` path).

The page is one self-contained HTML file (inline CSS and JS, no CDN, no tiles),
so it works on an air-gapped machine. Maps are drawn server-side (server/geo.py).
"""
from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, JSONResponse, Response

from synth.server import geo
from synth.server.rest.deps import ServiceDep, read_access
from synth.server.rest.models import ERRORS
from synth.server.rest.schemas import InterpolateIn, MapIn, ModelName
from synth.errors import InvalidArgument, Violation
from synth.service import to_dict
from synth.service import GeoFields, SynthService

SVG, GEOJSON = "image/svg+xml", "application/geo+json"


def page_html() -> str:
    return resources.files("synth.server").joinpath("web/index.html").read_text(encoding="utf-8")


def make_router(page: str) -> APIRouter:
    router = APIRouter(tags=["web"], responses=ERRORS)

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page)

    @router.post("/v1/models/{name}:map", response_class=Response, dependencies=[Depends(read_access)],
                 responses={200: {"content": {SVG: {"schema": {"type": "string"}}}}})
    def map_svg(name: ModelName, body: MapIn, service: ServiceDep) -> Response:
        """An SVG map of records (or of `n` fresh samples) and an optional path, for lat/lon models."""
        fields = _geo(service, name)
        if body.records is None:
            samples = service.sample(name, body.n, seed=body.seed, temperature=body.temperature, where=body.where)
        else:
            samples = service.parse_records(name, body.records)
        path = service.parse_records(name, body.path)
        svg = geo.render_svg(_points(samples, fields), _points(path, fields), body.width, body.height)
        return Response(svg, media_type=SVG)

    @router.post("/v1/models/{name}:geojson", response_class=JSONResponse, dependencies=[Depends(read_access)],
                 responses={200: {"content": {GEOJSON: {"schema": {"type": "object"}}}}})
    def path_geojson(name: ModelName, body: InterpolateIn, service: ServiceDep) -> JSONResponse:
        """The interpolation from `from` to `to` as GeoJSON, with geodesic step distances (metres)."""
        fields = _geo(service, name)
        result = service.interpolate(name, body.from_, body.to, steps=body.steps, method=body.method)
        dicts = [to_dict(m) for m in result.records]
        points = [geo.read_point(m, fields.lat, fields.lon) for m in result.records]
        return JSONResponse(geo.path_geojson(points, dicts), media_type=GEOJSON)

    return router


def _geo(service: SynthService, name: str) -> GeoFields:
    info = service.model_info(name)
    if info.geo is None:
        raise InvalidArgument(f"model {name!r} has no latitude/longitude fields to map",
                              [Violation("name", "needs float fields named lat/latitude and lon/lng/long/longitude")])
    return info.geo


def _points(messages: list[Any], fields: GeoFields) -> list[geo.Point]:
    return [geo.read_point(m, fields.lat, fields.lon, geo.label_of(to_dict(m))) for m in messages]
