"""The alarm engine: measured conditions become raised and cleared alarm events."""
