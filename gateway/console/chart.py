"""Blocked sends per day by reason, as stacked bars drawn on the server: SVG shapes for the template, no script."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 12, 28
# Colours with at least 3:1 contrast against the white chart background (WCAG's non-text contrast).
REASON_COLOURS = {
    "unsubscribed": "#b3261e",
    "invalid_address": "#6b4fa3",
    "unverified": "#a15c00",
    "no_recipients_left": "#1f5f8b",
}
OTHER_COLOUR = "#4d5560"


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    label: str  # what a screen reader and a hover say


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    legend: tuple[tuple[str, str], ...]  # (reason, colour)
    total: int
    summary: str


def nice_top(value: int) -> int:
    """The axis' top: 1, 2 or 5 times a power of ten, at least `value` (and at least 1)."""
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            if factor * magnitude >= value:
                return factor * magnitude
        magnitude *= 10


def per_day_chart(counts: dict[date, dict[str, int]], first: date, last: date) -> Chart:
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    reasons = sorted({reason for per_reason in counts.values() for reason in per_reason},
                     key=lambda r: (r not in REASON_COLOURS, list(REASON_COLOURS).index(r) if r in REASON_COLOURS else 0, r))
    totals = [sum(counts.get(day, {}).values()) for day in days]
    top = nice_top(max(totals, default=0))
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_width / len(days)
    bar_width = max(slot * 0.7, 1.0)
    bars = []
    for index, day in enumerate(days):
        x = LEFT + index * slot + (slot - bar_width) / 2
        y = TOP + plot_height
        for reason in reasons:
            count = counts.get(day, {}).get(reason, 0)
            if not count:
                continue
            height = plot_height * count / top
            y -= height
            bars.append(Bar(round(x, 1), round(y, 1), round(bar_width, 1), round(height, 1),
                            REASON_COLOURS.get(reason, OTHER_COLOUR),
                            f"{day:%d %b}: {count} {reason.replace('_', ' ')}"))
    every = max(1, len(days) // 7)
    x_ticks = tuple(Tick(round(LEFT + i * slot + slot / 2, 1), f"{day:%d %b}")
                    for i, day in enumerate(days) if i % every == 0)
    y_ticks = tuple(Tick(round(TOP + plot_height - plot_height * v / top, 1), str(v))
                    for v in sorted({0, top // 2, top}))
    total = sum(totals)
    summary = (f"{total} blocked send{'s' if total != 1 else ''} from {first:%d %b} to {last:%d %b}"
               + (": " + ", ".join(f"{sum(c.get(r, 0) for c in counts.values())} {r.replace('_', ' ')}"
                                   for r in reasons) if reasons else ""))
    legend = tuple((reason.replace("_", " "), REASON_COLOURS.get(reason, OTHER_COLOUR)) for reason in reasons)
    return Chart(WIDTH, HEIGHT, tuple(bars), x_ticks, y_ticks, legend, total, summary)
