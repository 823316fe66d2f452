"""Printable charts of cross-sections and long profiles (SVG with no external references, or PNG).

Drawn with matplotlib's Agg/SVG backends on explicit figures (no pyplot state), page-sized (A4 section, A3
profile, landscape), text in WenQuanYi Micro Hei when installed (Debian fonts-wqy-microhei; DejaVu Sans
otherwise) and rendered as paths, so the SVG prints the same everywhere. Pipes are drawn to scale in metres in
CJJ 61-2017 Appendix B colours (:data:`cim.pipes.dictionaries.CATEGORIES`); the vertical exaggeration, when
needed to fit the page, and the resulting print scales are written on the sheet. Each pipe is an SVG group
``pipe-<feature id>`` (profile: ``segment-<feature id>``, ``node-<point id>``).

Example::

    Path("section.svg").write_text(section_svg(sec))
    Path("profile.png").write_bytes(profile_png(prof))
"""

from __future__ import annotations

import io
import math
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from cim.pipes.dictionaries import CATEGORIES, SUBTYPES

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from cim.analysis.profile import LongProfile
    from cim.analysis.sections import CrossSection

A4 = (11.69, 8.27)
A3 = (16.54, 11.69)
CJK_FONT = "WenQuanYi Micro Hei"
GROUND = "#7a5a2b"
SOIL = "#f4ecdc"
ALERT = "#d62728"
_NICE = (1, 2, 2.5, 5)


@lru_cache(maxsize=1)
def _fonts() -> tuple[str, ...]:
    """Font families to use: the CJK font when installed (registered with matplotlib), then DejaVu Sans."""
    from matplotlib import font_manager

    for path in font_manager.findSystemFonts():
        if "wqy-microhei" in path.lower():
            try:
                font_manager.fontManager.addfont(path)
            except (OSError, RuntimeError):  # pragma: no cover - a broken font file
                break
            return (CJK_FONT, "DejaVu Sans")
    return ("DejaVu Sans",)


@contextmanager
def _style() -> Iterator[None]:
    import matplotlib

    rc = {"font.family": list(_fonts()), "axes.unicode_minus": False, "svg.fonttype": "path",
          "svg.hashsalt": "cim-charts", "font.size": 8}
    with matplotlib.rc_context(rc), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from")  # DejaVu fallback without CJK
        yield


def colour(category: str | None, subtype: str | None = None) -> str:
    """Hex display colour of a category/sub-type (CJJ 61 Appendix B), grey when unknown."""
    sub = SUBTYPES.get(subtype or "")
    cat = CATEGORIES.get(category or "")
    rgb = sub.colour if sub and sub.major == category else cat.colour if cat else (128, 128, 128)
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _nice_at_most(v: float) -> float:
    """The largest 1/2/2.5/5 × 10^k not above ``v`` (at least 1)."""
    if not math.isfinite(v) or v <= 1:
        return 1.0
    k = 10 ** math.floor(math.log10(v))
    return max(n * k for n in _NICE if n * k <= v)


def _exaggeration(xrange: float, yrange: float, box: tuple[float, float]) -> float:
    """Vertical exaggeration that lets ``yrange`` fill a box of ``box`` (w, h) inches over ``xrange``."""
    return _nice_at_most((xrange / max(yrange, 1e-6)) * (box[1] / box[0]))


def _fit(ax: Axes, box: tuple[float, float], x: tuple[float, float], y: tuple[float, float], ve: float) -> None:
    """Limits covering ``x`` and ``y`` whose shape matches the box at exaggeration ``ve`` (the short side grows)."""
    (x0, x1), (y0, y1) = x, y
    need_y = (x1 - x0) * box[1] / box[0] / ve
    if need_y >= y1 - y0:
        y0 -= (need_y - (y1 - y0)) / 2
        y1 = y0 + need_y
    else:
        need_x = (y1 - y0) * ve * box[0] / box[1]
        x0 -= (need_x - (x1 - x0)) / 2
        x1 = x0 + need_x
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect(ve, adjustable="box")


def _scale_note(fig: Figure, ax: Axes, ve: float) -> str:
    ax.apply_aspect()
    pos = ax.get_position()
    width_m = pos.width * fig.get_figwidth() * 0.0254
    x0, x1 = ax.get_xlim()
    h = (x1 - x0) / width_m
    digits = 10 ** max(0, math.floor(math.log10(h)) - 1)
    h = round(h / digits) * digits
    v = h / ve
    ex = f"竖向放大 ×{ve:g} (vertical exaggeration)" if ve > 1 else "横竖同比例 (true scale)"
    return f"{ex};  打印比例 print scale ≈ H 1:{h:,.0f}, V 1:{v:,.0f} ({fig.get_figwidth() * 25.4:.0f} mm wide sheet)"


def _legend(ax: Axes, cats: list[tuple[str | None, str | None]]) -> None:
    from matplotlib.patches import Patch

    seen: dict[str, Patch] = {}
    for cat, sub in cats:
        c = CATEGORIES.get(cat or "")
        name = f"{c.name_zh} {c.code}" if c else (cat or "未知")
        seen.setdefault(name, Patch(facecolor=colour(cat, sub), edgecolor="black", linewidth=0.5, label=name))
    if seen:
        ax.legend(handles=list(seen.values()), loc="lower right", fontsize=7, framealpha=0.9)


def _save(fig: Figure, fmt: str, dpi: int = 150) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    metadata: dict[str, Any] = {"Date": None, "Creator": "cim.analysis.charts"} if fmt == "svg" else {}
    fig.savefig(buf, format=fmt, dpi=dpi, metadata=metadata)
    if fmt == "svg":  # no DTD to fetch: the document stands alone
        return re.sub(rb"<!DOCTYPE[^>]*>\s*", b"", buf.getvalue(), count=1)
    return buf.getvalue()


# -- cross-section ----------------------------------------------------------------------------------------------

def _section_figure(sec: CrossSection) -> Figure:
    from matplotlib.figure import Figure
    from matplotlib.patches import Ellipse, Rectangle

    fig = Figure(figsize=A4)
    ax = fig.add_axes((0.07, 0.12, 0.86, 0.72))
    g = sec.ground_h
    heights = [v for c in sec.crossings for v in (c.top, c.bottom, c.ground) if math.isfinite(v)]
    heights += [float(v) for v in g[np.isfinite(g)]]
    lo, hi = (min(heights), max(heights)) if heights else (0.0, 1.0)
    lo, hi = lo - 0.6, hi + 0.4 + 0.18 * max(hi - lo, 1.0)  # room for labels above the ground
    box = (0.86 * A4[0], 0.72 * A4[1])
    ve = _exaggeration(sec.length, hi - lo, box)
    _fit(ax, box, (0.0, sec.length), (lo, hi), ve)
    lo, hi = ax.get_ylim()
    ok = np.isfinite(g)
    if ok.any():
        ax.fill_between(sec.stations, np.where(ok, g, np.nan), lo - 100, color=SOIL, zorder=0)
        ax.plot(sec.stations, np.where(ok, g, np.nan), color=GROUND, linewidth=1.4, label="地面 ground", zorder=3)
    used: dict[str, int] = {}
    for c in sec.crossings:
        face = colour(c.category, c.subtype)
        hw = c.half_width_along if math.isfinite(c.width_m) else 0.05
        h = c.height_m if math.isfinite(c.height_m) else 0.1
        if c.shape == "rect":
            patch: Any = Rectangle((c.station - hw, c.z - h / 2), 2 * hw, h, facecolor=face, edgecolor="black",
                                   linewidth=0.6, zorder=4)
        else:
            patch = Ellipse((c.station, c.z), 2 * hw, h, facecolor=face, edgecolor="black", linewidth=0.6, zorder=4)
        n = used.get(c.feature_id, 0)
        used[c.feature_id] = n + 1
        patch.set_gid(f"pipe-{c.feature_id}" + (f"-{n + 1}" if n else ""))
        ax.add_patch(patch)
        top = c.top if math.isfinite(c.top) else c.z
        ground = c.ground if math.isfinite(c.ground) else top
        label_y = ground + 0.05 * (hi - lo)
        ax.plot([c.station, c.station], [top, label_y], color="#555555", linewidth=0.4, zorder=2)
        depth = f"埋深 {c.depth_top:.2f} m" if math.isfinite(c.depth_top) else "埋深 ?"
        ax.text(c.station, label_y, f"{c.feature_id}  {c.size or ''}  {depth}", rotation=90, ha="center",
                va="bottom", fontsize=6.5, zorder=5)
    ax.set_xlabel("桩号 station along the line (m)")
    ax.set_ylabel("高程 height, 1985 national (m)")
    ax.grid(True, linewidth=0.3, color="#cccccc")
    _legend(ax, [(c.category, c.subtype) for c in sec.crossings])
    fig.suptitle(f"横断面 Cross-section — {sec.dataset}, line {sec.length:.1f} m, {len(sec.crossings)} pipes",
                 fontsize=12, y=0.97)
    fig.text(0.07, 0.905, _scale_note(fig, ax, ve), fontsize=8)
    fig.text(0.07, 0.03, f"地面 ground: {sec.ground_name} — {sec.ground_source}.  埋深 = ground − pipe top;  "
                         f"CRS {sec.frame.storage_crs}; pipes drawn to scale (widths along the line).", fontsize=7)
    return fig


def section_svg(section: CrossSection) -> str:
    """The cross-section as a self-contained SVG document (text as paths)."""
    with _style():
        return _save(_section_figure(section), "svg").decode("utf-8")


def section_png(section: CrossSection, dpi: int = 150) -> bytes:
    """The cross-section as PNG bytes (A4 landscape at ``dpi``)."""
    with _style():
        return _save(_section_figure(section), "png", dpi)


# -- long profile -----------------------------------------------------------------------------------------------

def _profile_figure(prof: LongProfile) -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=A3)
    ax = fig.add_axes((0.06, 0.36, 0.9, 0.52))
    table = fig.add_axes((0.06, 0.05, 0.9, 0.22))
    nodes, segs = prof.nodes, prof.segments
    st = np.array([n.station for n in nodes])
    ground = np.array([n.ground for n in nodes])
    heights = [v for s in segs for v in (s.invert_from, s.invert_to, s.crown_from, s.crown_to)]
    heights += list(ground)
    heights = [v for v in heights if math.isfinite(v)]
    lo, hi = (min(heights), max(heights)) if heights else (0.0, 1.0)
    lo, hi = lo - 0.5, hi + 0.5
    box = (0.9 * A3[0], 0.52 * A3[1])
    pad = 0.03 * max(prof.length, 1.0)
    ve = _exaggeration(prof.length + 2 * pad, hi - lo, box)
    _fit(ax, box, (-pad, prof.length + pad), (lo, hi), ve)
    lo, hi = ax.get_ylim()
    ax.fill_between(st, ground, lo - 100, color=SOIL, zorder=0)
    ax.plot(st, ground, color=GROUND, linewidth=1.4, marker=".", label="地面 ground", zorder=3)
    face = colour(prof.category)
    for s in segs:
        xs = [s.station_from, s.station_to]
        bad = s.reversed_slope
        line = ALERT if bad else "black"
        ax.fill_between(xs, [s.invert_from, s.invert_to], [s.crown_from, s.crown_to], color=ALERT if bad else face,
                        alpha=0.55, linewidth=0, zorder=2, gid=f"segment-{s.feature_id}")
        ax.plot(xs, [s.invert_from, s.invert_to], color=line, linewidth=1.6 if bad else 1.0, zorder=4)
        ax.plot(xs, [s.crown_from, s.crown_to], color=line, linewidth=0.6, linestyle="--", zorder=4)
        mid = (s.station_from + s.station_to) / 2
        flags = "  ".join({"reversed_slope": "倒坡", "under_min_slope": "坡度不足",
                           "diameter_decrease": "管径逆变"}[f] for f in s.flags)
        text = f"{s.size or '?'}  i={s.slope_permille:.2f}‰  L={s.length_m:.1f} m" + (f"\n{flags}" if flags else "")
        crown = max(v for v in (s.crown_from, s.crown_to, lo) if math.isfinite(v))
        ax.text(mid, crown + 0.15, text, ha="center", va="bottom", fontsize=6.5, zorder=5,
                color=ALERT if s.flags else "black")
    for n in nodes:
        if math.isfinite(n.ground) and math.isfinite(n.invert):
            ax.plot([n.station, n.station], [n.invert, n.ground], color="#444444", linewidth=2.2, zorder=3,
                    solid_capstyle="butt", gid=f"node-{n.point_id}")
    ax.set_ylabel("高程 height, 1985 national (m)")
    ax.grid(True, linewidth=0.3, color="#cccccc")
    ax.tick_params(labelbottom=True)
    ax.apply_aspect()
    table.set_xlim(ax.get_xlim())
    _profile_table(table, prof)
    cat = CATEGORIES.get(prof.category or "")
    name = f"{cat.name_zh} {cat.code}" if cat else (prof.category or "")
    fig.suptitle(f"纵断面 Long profile — {prof.dataset} {name}: {nodes[0].point_id} → {nodes[-1].point_id}, "
                 f"{prof.length:.1f} m, {len(segs)} segments ({prof.direction})", fontsize=13, y=0.97)
    fig.text(0.06, 0.915, _scale_note(fig, ax, ve) + ";  实线 invert 管内底, 虚线 crown 管顶 (inner), "
             "竖线 manholes;  red = 倒坡 reversed slope", fontsize=8)
    ground_note = prof.ground_name or "surveyed point ground elevations"
    fig.text(0.06, 0.01, f"地面 ground: {ground_note}.  i = fall along the run (‰);  CRS {prof.frame.storage_crs}.",
             fontsize=7)
    return fig


def _profile_table(ax: Axes, prof: LongProfile) -> None:
    """The band under a profile: per node point id, ground, invert and depth; per segment size, slope, length."""
    rows = ("井号 point", "地面高程 ground", "管内底高程 invert", "埋深 depth", "管径 坡度 距离")
    ax.set_ylim(0, len(rows))
    ax.set_yticks([len(rows) - i - 0.5 for i in range(len(rows))], rows, fontsize=7)
    ax.tick_params(axis="x", labelbottom=True)
    ax.set_xlabel("桩号 station (m)")
    for i in range(1, len(rows)):
        ax.axhline(i, color="#999999", linewidth=0.4)
    for n in prof.nodes:
        ax.axvline(n.station, color="#dddddd", linewidth=0.4, zorder=0)
        for row, value in enumerate((n.point_id, _fmt(n.ground), _fmt(n.invert), _fmt(n.depth, 2))):
            ax.text(n.station, len(rows) - row - 0.5, value, rotation=90, ha="center", va="center", fontsize=6)
    for s in prof.segments:
        mid = (s.station_from + s.station_to) / 2
        ax.text(mid, 0.5, f"{s.size or '?'}\n{s.slope_permille:.2f}‰\n{s.length_m:.1f}", ha="center", va="center",
                fontsize=5.5, color=ALERT if s.flags else "black")


def _fmt(v: float, digits: int = 3) -> str:
    return f"{v:.{digits}f}" if math.isfinite(v) else "—"


def profile_svg(profile: LongProfile) -> str:
    """The long profile as a self-contained SVG document (text as paths)."""
    with _style():
        return _save(_profile_figure(profile), "svg").decode("utf-8")


def profile_png(profile: LongProfile, dpi: int = 150) -> bytes:
    """The long profile as PNG bytes (A3 landscape at ``dpi``)."""
    with _style():
        return _save(_profile_figure(profile), "png", dpi)
