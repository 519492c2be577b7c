"""What the browser tests share: Debian's Chromium, where screenshots go, and their marks.

The `browser` fixture itself is in conftest.py (Playwright is imported only when a test asks).
"""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
"""Screenshots for a person to look at (git-ignored)."""

BROWSER_TEST_MARKS = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian's chromium is not installed (deploy/local/test.sh does)",
    ),
]
