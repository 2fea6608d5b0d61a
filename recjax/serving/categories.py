"""Item categories for business rules, derived from item descriptions.

Online Retail has no category column. Its descriptions mostly end in the product type
("WHITE HANGING HEART T-LIGHT HOLDER", "LUNCH BAG RED RETROSPOT"), so the category here
is the description's last word after skipping colour, size and print-pattern words, with
a plural "S" dropped: HOLDER, BAG, MUG, NECKLACE... It is a heuristic, not a taxonomy:
about 800 categories over 3,700 items, some of them themes (CHRISTMAS) rather than types.
"""

from __future__ import annotations

import re

import numpy as np

# Words that describe how a product looks, not what it is.
_NOT_A_TYPE = frozenset(
    re.findall(
        r"\w+",
        "PINK RED BLUE GREEN WHITE BLACK IVORY CREAM PURPLE GOLD SILVER ORANGE YELLOW BROWN GREY "
        "LILAC TURQUOISE SMALL LARGE MEDIUM MINI JUMBO BIG DESIGN DESIGNS ASSORTED RETROSPOT "
        "POLKADOT SPOT SPOTS STRIPE STRIPES COLOUR COLOURS",
    )
)


def description_category(text: str) -> str:
    """The product type a description ends with ("" for a description with no word)."""
    words = re.findall(r"[A-Z]+", text.upper())
    kept = [word for word in words if word not in _NOT_A_TYPE] or words
    if not kept:
        return ""
    word = kept[-1]
    return word[:-1] if word.endswith("S") and not word.endswith("SS") else word


def description_categories(texts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes [n] int32, names [C]): the category of each of `texts` [n] as an index into
    the sorted category `names`."""
    names = [description_category(str(text)) for text in texts]
    unique, codes = np.unique(np.asarray(names, dtype=str), return_inverse=True)
    return codes.astype(np.int32), unique
