"""Small asyncio pieces."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable


async def until_first(*work: Awaitable[None]) -> None:
    """Run ``work`` concurrently until the first one ends; cancel the others; re-raise its error."""
    tasks = [asyncio.ensure_future(each) for each in work]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if task in done:
            task.result()
            return
