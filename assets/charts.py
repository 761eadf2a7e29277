"""A spending chart for the operator's UI: one bar per project, spent per funding source against
the grant. SVG (the browser draws the Chinese text with its own fonts), embedded as a data URI in
markdown metadata, so it needs neither a plotting library nor CJK fonts on the server."""

import base64
from html import escape

from adapters.registry import FUNDING_SOURCES

_COLOURS = {"部拨经费": "#4e79a7", "市级配套": "#f28e2b", "市级经费": "#59a14f"}
_ROW, _LEFT, _WIDTH, _TOP = 22, 110, 520, 34


def spending_svg(rows: list[tuple[str, str, int, int | None]]) -> str:
    """rows: (project code, funding source, granted fen, spent fen or None when unreconciled)."""
    projects: dict[str, dict[str, tuple[int, int | None]]] = {}
    for code, source, granted, spent in rows:
        projects.setdefault(code, {})[source] = (granted, spent)
    scale = max((sum(max(g, s or 0) for g, s in by.values()) for by in projects.values()), default=1) or 1
    height = _TOP + _ROW * len(projects) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_LEFT + _WIDTH + 130}" height="{height}" '
             f'font-family="sans-serif" font-size="12">',
             f'<text x="{_LEFT}" y="16" font-weight="bold">各项目经费支出（按经费来源，竖线为拨付总额）</text>']
    for i, (code, by_source) in enumerate(sorted(projects.items())):
        y = _TOP + i * _ROW
        parts.append(f'<text x="{_LEFT - 6}" y="{y + 13}" text-anchor="end">{escape(code)}</text>')
        x = float(_LEFT)
        for source in FUNDING_SOURCES:
            granted, spent = by_source.get(source, (0, None))
            if spent:
                w = _WIDTH * spent / scale
                parts.append(f'<rect x="{x:.1f}" y="{y + 2}" width="{w:.1f}" height="{_ROW - 6}" fill="{_COLOURS[source]}">'
                             f'<title>{escape(code)} {source} 支出 {spent / 100:,.2f} 元</title></rect>')
                x += w
        granted_total = sum(g for g, _ in by_source.values())
        gx = _LEFT + _WIDTH * granted_total / scale
        parts.append(f'<line x1="{gx:.1f}" x2="{gx:.1f}" y1="{y}" y2="{y + _ROW - 2}" stroke="#333" stroke-width="2"/>')
        if all(s is None for _, s in by_source.values()):
            parts.append(f'<text x="{_LEFT + 4}" y="{y + 13}" fill="#999">未对账</text>')
    legend_y = height - 10
    for j, source in enumerate(FUNDING_SOURCES):
        lx = _LEFT + j * 110
        parts.append(f'<rect x="{lx}" y="{legend_y - 10}" width="12" height="12" fill="{_COLOURS[source]}"/>'
                     f'<text x="{lx + 16}" y="{legend_y}">{source}</text>')
    parts.append("</svg>")
    return "".join(parts)


def as_markdown_image(svg: str, title: str) -> str:
    return f"![{title}](data:image/svg+xml;base64,{base64.b64encode(svg.encode('utf-8')).decode('ascii')})"
