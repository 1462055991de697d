"""Hypothesis profiles: CI runs the default budget; ``HYPOTHESIS_PROFILE=long`` runs longer."""

import os

from hypothesis import settings

settings.register_profile("long", max_examples=20_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
