"""Plotly figures as plain dicts (rendered by plotly.js in the page).

Built by hand instead of through plotly.graph_objects: the validation there costs tens
of milliseconds per figure, and these pages have a 300 ms budget.
"""

from __future__ import annotations

PALETTE = ["#1d4ed8", "#059669", "#d97706", "#dc2626", "#7c3aed", "#0891b2", "#be185d", "#4b5563"]


def bar_figure(
    *, x: list, y: list, name: str = "", color: str = PALETTE[0], y_title: str = "tokens", dates: bool = False
) -> dict:
    xaxis = {"type": "date", "tickformat": "%b %d"} if dates else {"type": "category"}
    return {
        "data": [{"type": "bar", "x": x, "y": y, "name": name, "marker": {"color": color}}],
        "layout": {"yaxis": {"title": {"text": y_title}, "rangemode": "tozero"}, "xaxis": xaxis},
    }


def donut_figure(*, labels: list, values: list) -> dict:
    return {
        "data": [
            {
                "type": "pie",
                "labels": labels,
                "values": values,
                "hole": 0.5,
                "marker": {"colors": PALETTE[: len(labels)]},
                "textinfo": "label+percent",
            }
        ],
        "layout": {"showlegend": False},
    }


def grouped_bar_figure(*, x: list, series: dict[str, list], y_title: str) -> dict:
    data = [
        {"type": "bar", "x": x, "y": ys, "name": name, "marker": {"color": PALETTE[i % len(PALETTE)]}}
        for i, (name, ys) in enumerate(series.items())
    ]
    return {"data": data, "layout": {"barmode": "group", "yaxis": {"title": {"text": y_title}}}}


def with_table(figure: dict, *, first_column: str) -> dict:
    """Add ``figure["table"]``: the same numbers as rows, for a screen-reader-friendly data table."""
    traces = figure["data"]
    if traces and traces[0]["type"] == "pie":
        t = traces[0]
        columns = [first_column, "value"]
        rows = [[label, value] for label, value in zip(t["labels"], t["values"], strict=True)]
    else:
        columns = [first_column] + [t.get("name") or "value" for t in traces]
        xs = traces[0]["x"] if traces else []
        rows = [[x] + [t["y"][i] for t in traces] for i, x in enumerate(xs)]
    figure["table"] = {"columns": columns, "rows": rows}
    return figure
