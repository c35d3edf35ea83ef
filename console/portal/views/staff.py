"""The staff overview: revenue, GPU cost and margin per month, tenant and node; tenants per plan."""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import render
from django.utils import timezone

from console.portal import charts, selectors


@staff_member_required
def staff_overview(request):
    period_start = timezone.localdate().replace(day=1)
    economics = selectors.staff_economics(period_start=period_start, months=6, fresh=bool(request.GET.get("fresh")))
    rows, by_node, by_period = economics["rows"], economics["by_node"], economics["by_period"]
    plan_counts = economics["plan_counts"]
    this_month = by_period[-1] if by_period else None
    top = [row["e"] for row in rows]
    figures = {
        "fig_period": charts.grouped_bar_figure(
            x=[e.label for e in by_period],
            series={
                "Revenue": [float(e.revenue) for e in by_period],
                "GPU cost": [float(e.gpu_cost) for e in by_period],
                "Margin": [float(e.margin) for e in by_period],
            },
            y_title=this_month.currency if this_month else "USD",
        ),
        "fig_tenant": charts.grouped_bar_figure(
            x=[e.label for e in top],
            series={"Revenue": [float(e.revenue) for e in top], "GPU cost": [float(e.gpu_cost) for e in top]},
            y_title="this month",
        ),
        "fig_node": charts.grouped_bar_figure(
            x=[e.label for e in by_node],
            series={"Revenue": [float(e.revenue) for e in by_node], "GPU cost": [float(e.gpu_cost) for e in by_node]},
            y_title="this month",
        ),
        "fig_plans": charts.donut_figure(labels=list(plan_counts), values=list(plan_counts.values())),
    }
    for key, column in (("fig_period", "month"), ("fig_tenant", "tenant"), ("fig_node", "node"), ("fig_plans", "plan")):
        charts.with_table(figures[key], first_column=column)
    return render(
        request,
        "portal/staff_overview.html",
        {
            "period_start": period_start,
            "rows": rows,
            "by_node": by_node,
            "this_month": this_month,
            "tenant_count": economics["tenant_count"],
            "plan_counts": plan_counts,
            "figures": figures,
            "computed_at": economics["computed_at"],
        },
    )
