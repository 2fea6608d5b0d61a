"""Rewrites one generated table in README.md, between `<!-- results:NAME:start/end -->`."""

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def replace_table(name: str, table: str, readme: Path = README) -> None:
    """Puts `table` between the `results:name` markers of `readme` (which must exist)."""
    start, end = f"<!-- results:{name}:start -->", f"<!-- results:{name}:end -->"
    text = readme.read_text()
    if start not in text or end not in text:
        sys.exit(f"{readme} lacks the {start} / {end} markers.")
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.DOTALL)
    readme.write_text(pattern.sub(lambda _: f"{start}\n{table}\n{end}", text))
