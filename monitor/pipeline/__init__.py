"""A channel input end to end: its pipeline of checks, the live session, one-pass analysis."""
