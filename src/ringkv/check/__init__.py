"""Checkers for recorded histories (issue 5): pure Python, used by the
simulator and by ``ringkv verify``. See docs/guarantees.md."""
