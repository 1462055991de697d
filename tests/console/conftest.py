"""Fixtures of the console tests."""

from tests.console.browser import browser  # noqa: F401  (fixture)
