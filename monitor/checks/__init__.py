"""The checks: each turns measurements of one channel input into alarm conditions."""
