"""The package's metadata: the long description an index shows has no relative links
or images (they would be broken there), built from README.md by setup.py."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _long_description() -> str:
    spec = importlib.util.spec_from_file_location("minimallm_setup", ROOT / "setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # setup() runs only as a script
    text: str = module.long_description((ROOT / "README.md").read_text())
    return text


def test_the_long_description_has_no_relative_links_or_images() -> None:
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"\]\((?!https?://|#)", readme)  # the README has some: a real test
    text = _long_description()
    assert not re.findall(r"!\[[^\]]*\]\(", text)
    assert not [u for u in re.findall(r"\]\(([^)]*)\)", text) if not u.startswith(("http", "#"))]
    assert text.startswith("# minimallm\n")
    assert "bench:start" not in text
