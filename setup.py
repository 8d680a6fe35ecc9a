"""The long description for the package index, made from README.md at build time.

Everything else is in pyproject.toml. The README is written for the repository: its
benchmark section shows plots stored beside it and links to files of the checkout,
which an index cannot show (broken images, dead links). The long description is the
README with that section replaced by one sentence and every relative link reduced to
its text (the file it names is given in plain words); absolute links stay.
"""

from __future__ import annotations

import re
from pathlib import Path

from setuptools import setup

_BENCH = re.compile(r"<!-- bench:start -->.*?<!-- bench:end -->", re.S)
_IMAGE = re.compile(r"!\[([^\]]*)\]\((?!https?://)[^)]*\)\n?")
_LINK = re.compile(r"\[([^\]]+)\]\((?!https?://|#)([^)]+)\)")


def long_description(readme: str) -> str:
    """``readme`` without relative images and links (see the module docstring)."""
    text = _BENCH.sub(
        "The figures and plots of the latest benchmark run are in the source "
        "distribution (README.md and docs/benchmarks/).",
        readme,
    )
    text = _IMAGE.sub("", text)
    return _LINK.sub(lambda m: m[1] if m[1].strip("`") == m[2] else f"{m[1]} ({m[2]})", text)


if __name__ == "__main__":
    setup(
        long_description=long_description(Path(__file__).with_name("README.md").read_text()),
        long_description_content_type="text/markdown",
    )
