"""Configuration: the typed model of the daemon's and the agent's YAML, and its loader."""
