"""Small helpers every part of monitor/ may use: backoff, asyncio pieces."""
