"""The one parser of the list-valued text options (plan's --hardware, --tp, --ep, --layouts and --slo, --image-size,
the ';' between technique sets): 'a,b' -> ['a', 'b'], surrounding spaces stripped.

An empty item ('1,,2', a trailing comma) is refused, not dropped: a doubled comma is a typo, and dropping it searched
a different list from the one the user meant without saying so.
"""

from __future__ import annotations

from lvlmsim.errors import SpecError


def split_items(text: str, what: str, sep: str = ",") -> list[str]:
    """Items of `text` split at `sep`, stripped; [] when it holds none ('' or ','; callers say whether an empty
    list means their default). `what` names the option in the error."""
    items = [x.strip() for x in text.split(sep)]
    if not any(items):
        return []
    if "" in items:
        raise SpecError(f"{what}: empty item in {text!r} (a doubled, leading or trailing '{sep}'); give items "
                        f"separated by single '{sep}'")
    return items
