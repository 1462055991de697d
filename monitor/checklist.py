"""The modules whose ``@builder`` functions register the pipeline's pluggable checks.

Importing this module imports them all; keep it a plain list of imports, one per check.
Each module must import its detector lazily (inside the builder or the check) when the
detector is heavy, so a channel that does not use it pays no start-up cost.
"""

import monitor.check_avsync  # noqa: F401
import monitor.check_graphics  # noqa: F401
import monitor.check_loudness  # noqa: F401
