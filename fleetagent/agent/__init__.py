"""The fleet agent: runs on each GPU host (or in-process on the embedded default)."""
