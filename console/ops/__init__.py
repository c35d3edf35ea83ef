"""Ops dashboard: live fleet grid, node detail, drain/resume/restart, /metrics."""
