"""Strict-parsing errors and the load report that accounts for every input row."""

from __future__ import annotations

import dataclasses
from typing import Literal

OnError = Literal["raise", "skip"]  # "skip" counts malformed rows in the report instead.


class DataFormatError(ValueError):
    """A malformed input row: names the file, line, field, what was expected and found."""

    def __init__(self, path: str, line: int | None, field: str, expected: str, found: str):
        self.path, self.line, self.field, self.expected, self.found = (
            path,
            line,
            field,
            expected,
            found,
        )
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: field {field!r}: expected {expected}, found {found!r}")


@dataclasses.dataclass
class LoadReport:
    """What a reader did with each input row: kept, or removed/skipped for a named reason.

    `rows_read == events + sum(removed.values()) + sum(skipped.values())` always holds
    (readers that merge rows record the merged ones under `removed`), so nothing is
    dropped without a count.
    """

    source: str
    rows_read: int = 0
    events: int = 0
    removed: dict[str, int] = dataclasses.field(default_factory=dict)  # by documented policy
    skipped: dict[str, int] = dataclasses.field(default_factory=dict)  # malformed, on_error="skip"
    notes: dict[str, int] = dataclasses.field(default_factory=dict)  # kept, but worth a count
    first_skipped: list[str] = dataclasses.field(default_factory=list)  # a few error messages

    def remove(self, reason: str, count: int) -> None:
        if count:
            self.removed[reason] = self.removed.get(reason, 0) + int(count)

    def note(self, what: str, count: int) -> None:
        self.notes[what] = self.notes.get(what, 0) + int(count)

    def skip(self, error: DataFormatError, count: int = 1) -> None:
        key = f"malformed {error.field}"
        self.skipped[key] = self.skipped.get(key, 0) + count
        if len(self.first_skipped) < 5:
            self.first_skipped.append(str(error))

    def check_balanced(self) -> None:
        accounted = self.events + sum(self.removed.values()) + sum(self.skipped.values())
        if accounted != self.rows_read:
            raise AssertionError(
                f"{self.source}: {self.rows_read} rows read but {accounted} accounted for."
            )

    def lines(self) -> list[str]:
        """Human-readable summary, one fact per line."""
        out = [f"{self.source}: {self.rows_read:,} rows read, {self.events:,} events kept"]
        out += [f"  removed ({reason}): {count:,}" for reason, count in self.removed.items()]
        out += [f"  skipped ({reason}): {count:,}" for reason, count in self.skipped.items()]
        out += [f"  note ({what}): {count:,}" for what, count in self.notes.items()]
        out += [f"  e.g. {message}" for message in self.first_skipped]
        return out
