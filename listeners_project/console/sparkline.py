"""Server-rendered SVG sparklines: no chart library to vendor, no script, the numbers are in the page itself."""
from __future__ import annotations

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 240, 44


def sparkline(values: list[int], *, label: str, width: int = WIDTH, height: int = HEIGHT) -> SafeString:
    """One line per minute, scaled to the window's maximum; the title (hover) gives the total and the peak."""
    peak = max(values, default=0)
    step = width / max(len(values) - 1, 1)
    top = 3  # room for the stroke at the peak

    def y(value: int) -> float:
        return round(height - 1 - (value / peak) * (height - 1 - top), 1) if peak else height - 1

    points = " ".join(f"{round(i * step, 1)},{y(value)}" for i, value in enumerate(values))
    area = f"0,{height} {points} {width},{height}"
    return format_html(
        '<svg class="gw-spark" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{title}">'
        "<title>{title}</title>"
        '<polygon points="{area}" class="gw-spark-area"/><polyline points="{points}" class="gw-spark-line"/></svg>',
        w=width, h=height, area=mark_safe(area), points=mark_safe(points),  # noqa: S308 - numbers we formatted
        title=f"{label}: {sum(values)} in {len(values)} min, peak {peak}/min",
    )
