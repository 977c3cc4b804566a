"""Maps for models with latitude/longitude fields: an SVG drawn server-side, and GeoJSON paths.

No tiles and no CDN: the page must work offline, so the map is a projected
scatter plot with a graticule and a scale bar. The projection is picked from the
data, not hard-coded: the UTM zone of the points' centroid when they span a
zone's width or less (metres, little distortion, e.g. EPSG:32618 for Vermont),
otherwise a Lambert azimuthal equal-area projection centred on the centroid.
Distances along an interpolation path are geodesic (pyproj.Geod on WGS 84), not
measured in the projection.
"""
from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyproj import CRS, Geod, Transformer

from synth.errors import InvalidArgument, Violation

WGS84 = CRS.from_epsg(4326)
GEOD = Geod(ellps="WGS84")
NICE = (1, 2, 5)


@dataclass(frozen=True)
class Point:
    lon: float
    lat: float
    label: str = ""


def valid(p: Point) -> bool:
    return math.isfinite(p.lat) and math.isfinite(p.lon) and -90 <= p.lat <= 90 and -180 <= p.lon <= 180


def read_point(record: Any, lat_path: str, lon_path: str, label: str = "") -> Point:
    """The lat/lon of a message, following dotted paths (`geo.lat`)."""
    return Point(float(_get(record, lon_path)), float(_get(record, lat_path)), label)


def _get(message: Any, path: str) -> Any:
    value = message
    for part in path.split("."):
        value = getattr(value, part)
    return value


# ----------------------------------------------------------------------------- projection

def choose_crs(points: Sequence[Point]) -> CRS:
    """A projected CRS suited to the points: their UTM zone, or LAEA centred on them."""
    pts = [p for p in points if valid(p)]
    if not pts:
        raise InvalidArgument("no valid coordinates to draw", [Violation("records", "lat/lon out of range")])
    lat0 = sum(p.lat for p in pts) / len(pts)
    # Circular mean of longitude, so data across the antimeridian centres correctly.
    sx = sum(math.cos(math.radians(p.lon)) for p in pts)
    sy = sum(math.sin(math.radians(p.lon)) for p in pts)
    lon0 = math.degrees(math.atan2(sy, sx))
    span = max(abs(_wrap(p.lon - lon0)) for p in pts) * 2
    if span <= 6.0 and -80 <= lat0 <= 84:
        zone = int((lon0 + 180) // 6) % 60 + 1
        return CRS.from_epsg((32600 if lat0 >= 0 else 32700) + zone)
    return CRS.from_proj4(f"+proj=laea +lat_0={lat0:.6f} +lon_0={lon0:.6f} +datum=WGS84 +units=m +no_defs")


def _wrap(d: float) -> float:
    return (d + 180) % 360 - 180


def crs_label(crs: CRS) -> str:
    code = crs.to_epsg()
    return f"{crs.name} (EPSG:{code})" if code else crs.name


# ----------------------------------------------------------------------------- SVG

def render_svg(samples: Sequence[Point], path: Sequence[Point] = (), width: int = 720,
               height: int = 540) -> str:
    """An SVG map: samples as dots, `path` as a numbered polyline, graticule, scale bar, CRS."""
    samples = [p for p in samples if valid(p)]
    path = [p for p in path if valid(p)]
    crs = choose_crs([*samples, *path])
    fwd = Transformer.from_crs(WGS84, crs, always_xy=True)

    def xy(p: Point) -> tuple[float, float]:
        return fwd.transform(p.lon, p.lat)

    proj_s = [(p, *xy(p)) for p in samples]
    proj_p = [(p, *xy(p)) for p in path]
    allxy = [(x, y) for _, x, y in proj_s + proj_p if math.isfinite(x) and math.isfinite(y)]
    if not allxy:
        raise InvalidArgument("no coordinates can be projected", [Violation("records", "lat/lon out of range")])
    xs, ys = [x for x, _ in allxy], [y for _, y in allxy]
    cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    half_w = max((max(xs) - min(xs)) / 2 * 1.1, 500.0)  # at least 1 km across
    half_h = max((max(ys) - min(ys)) / 2 * 1.1, 500.0)
    margin = 28
    scale = min((width - 2 * margin) / (2 * half_w), (height - 2 * margin) / (2 * half_h))

    def sx(x: float) -> float:
        return width / 2 + (x - cx) * scale

    def sy(y: float) -> float:
        return height / 2 - (y - cy) * scale

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" class="synth-map" data-crs="{html.escape(crs.srs)}">',
        "<style>.grat{stroke:#d8dde3;stroke-width:1;fill:none}.gl{font:10px sans-serif;fill:#8a939c}"
        ".sample{fill:#2b6cb0;fill-opacity:.55;stroke:#fff;stroke-width:.5}"
        ".path{fill:none;stroke:#c53030;stroke-width:2.5;stroke-linejoin:round}"
        ".step{fill:#c53030;stroke:#fff;stroke-width:1}.stepn{font:bold 10px sans-serif;fill:#742a2a}"
        ".cap{font:11px sans-serif;fill:#4a5568}</style>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#f7fafc"/>',
        f'<clipPath id="frame"><rect x="{margin}" y="{margin}" width="{width - 2 * margin}" '
        f'height="{height - 2 * margin}"/></clipPath>',
    ]
    visible_w, visible_h = (width / 2 - margin) / scale, (height / 2 - margin) / scale  # the frame, in metres
    parts += _graticule(crs, fwd, cx, cy, visible_w, visible_h, sx, sy, width, height, margin)
    parts.append('<g clip-path="url(#frame)">')
    for p, x, y in proj_s:
        parts.append(f'<circle class="sample" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5">'
                     f"<title>{html.escape(p.label)}</title></circle>")
    if proj_p:
        pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for _, x, y in proj_p)
        parts.append(f'<polyline id="path" class="path" points="{pts}"/>')
        for i, (p, x, y) in enumerate(proj_p):
            parts.append(f'<circle class="step" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4.5">'
                         f"<title>{i}: {html.escape(p.label)}</title></circle>"
                         f'<text class="stepn" x="{sx(x) + 6:.1f}" y="{sy(y) - 6:.1f}">{i}</text>')
    parts.append("</g>")
    parts += _scale_bar(scale, height, margin)
    parts.append(f'<text class="cap" x="{width - margin}" y="{margin - 8}" text-anchor="end">'
                 f"{html.escape(crs_label(crs))}</text>")
    parts.append(f'<rect x="{margin}" y="{margin}" width="{width - 2 * margin}" height="{height - 2 * margin}" '
                 'fill="none" stroke="#a0aec0"/>')
    parts.append("</svg>")
    return "\n".join(parts)


def _nice(x: float) -> float:
    """The largest 1/2/5 x 10^k not above x."""
    k = math.floor(math.log10(x))
    for m in reversed(NICE):
        if m * 10**k <= x:
            return m * 10**k
    return 10**k


def _graticule(crs, fwd, cx, cy, half_w, half_h, sx, sy, width, height, margin) -> list[str]:
    """Meridians and parallels every 'nice' number of degrees, labelled at the frame."""
    inv = Transformer.from_crs(crs, WGS84, always_xy=True)
    corners = [inv.transform(cx + dx * half_w, cy + dy * half_h) for dx in (-1, 1) for dy in (-1, 1)]
    corners += [inv.transform(cx, cy + half_h), inv.transform(cx, cy - half_h)]
    lons = [c[0] for c in corners if math.isfinite(c[0])]
    lats = [c[1] for c in corners if math.isfinite(c[1])]
    if not lons or not lats:
        return []
    step = _nice(max(max(lons) - min(lons), max(lats) - min(lats), 1e-4) / 4)
    clon, clat = inv.transform(cx, cy)
    lines, labels = ['<g class="grat-g" clip-path="url(#frame)">'], []
    lon = math.floor(min(lons) / step) * step
    while lon <= max(lons) + 1e-9:
        lines.append(_poly([fwd.transform(lon, min(lats) + (max(lats) - min(lats)) * t / 20) for t in range(21)],
                           sx, sy, "grat"))
        x0 = sx(fwd.transform(lon, clat)[0])
        if margin < x0 < width - margin:
            labels.append(f'<text class="gl" x="{x0:.1f}" y="{height - margin + 12}" text-anchor="middle">'
                          f"{_deg(lon, 'E', 'W')}</text>")
        lon += step
    lat = math.floor(min(lats) / step) * step
    while lat <= max(lats) + 1e-9:
        lines.append(_poly([fwd.transform(min(lons) + (max(lons) - min(lons)) * t / 20, lat) for t in range(21)],
                           sx, sy, "grat"))
        y0 = sy(fwd.transform(clon, lat)[1])
        if margin < y0 < height - margin:
            labels.append(f'<text class="gl" x="{margin - 3}" y="{y0 + 3:.1f}" text-anchor="end">'
                          f"{_deg(lat, 'N', 'S')}</text>")
        lat += step
    return lines + ["</g>"] + labels


def _deg(v: float, pos: str, neg: str) -> str:
    text = f"{abs(v):.4f}".rstrip("0").rstrip(".")
    return f"{text}°{pos if v >= 0 else neg}"


def _poly(line: list[tuple[float, float]], sx, sy, cls: str) -> str:
    pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in line if math.isfinite(x) and math.isfinite(y))
    return f'<polyline class="{cls}" points="{pts}"/>'


def _scale_bar(scale: float, height: int, margin: int) -> list[str]:
    metres = _nice(120 / scale)  # about a sixth of the map, in whole units
    px = metres * scale
    label = f"{metres / 1000:g} km" if metres >= 1000 else f"{metres:g} m"
    x0, y0 = margin + 10, height - margin - 12
    return [f'<g class="scale"><rect x="{x0}" y="{y0}" width="{px:.1f}" height="4" fill="#2d3748"/>'
            f'<text class="cap" x="{x0}" y="{y0 - 4}">{label}</text></g>']


# ----------------------------------------------------------------------------- GeoJSON

def path_geojson(points: Sequence[Point], records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The path as a LineString plus one Point per step, with geodesic step distances in metres."""
    if any(not valid(p) for p in points):
        raise InvalidArgument("the path has coordinates out of range", [Violation("records", "lat/lon invalid")])
    steps = [0.0]
    if len(points) > 1:
        _, _, dist = GEOD.inv([p.lon for p in points[:-1]], [p.lat for p in points[:-1]],
                              [p.lon for p in points[1:]], [p.lat for p in points[1:]])
        steps += [float(d) for d in dist]
    cumulative = [sum(steps[: i + 1]) for i in range(len(steps))]
    n = len(points)
    features: list[dict[str, Any]] = [{
        "type": "Feature",
        "geometry": {"type": "LineString", "coordinates": [[p.lon, p.lat] for p in points]},
        "properties": {"kind": "interpolation", "steps": n, "step_distances_m": steps[1:],
                       "total_distance_m": cumulative[-1] if cumulative else 0.0},
    }]
    for i, (p, rec) in enumerate(zip(points, records)):
        features.append({
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [p.lon, p.lat]},
            "properties": {"step": i, "t": i / (n - 1) if n > 1 else 0.0,
                           "distance_from_previous_m": steps[i], "cumulative_m": cumulative[i],
                           "record": rec},
        })
    return {"type": "FeatureCollection", "features": features}


def label_of(record: dict[str, Any], limit: int = 160) -> str:
    """A record as one line of hover text (generated strings may hold any character)."""
    text = _XML_INVALID.sub("\ufffd", json.dumps(record, ensure_ascii=False, separators=(", ", ": ")))
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Characters XML 1.0 forbids even when escaped (U+FFFE, lone surrogates, most C0 controls).
_XML_INVALID = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
