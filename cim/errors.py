"""One exception hierarchy for the whole service; no HTTP codes here (the API maps them)."""

from __future__ import annotations

from dataclasses import dataclass


class CIMError(Exception):
    """Base of every error the service raises on purpose."""


class NotFoundError(CIMError):
    """A dataset, feature or file that does not exist."""


class InvalidInputError(CIMError):
    """Input that cannot be used as given (bad file, bad row, bad parameter).

    ``file``, ``row`` and ``field`` locate the problem when known, so a user can fix it.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        field: str | None = None,
        value: object = None,
    ) -> None:
        self.file, self.row, self.field, self.value = file, row, field, value
        where = ", ".join(
            part
            for part in (
                f"file {file}" if file else "",
                f"row {row}" if row is not None else "",
                f"field {field!r}" if field else "",
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)


class EncodingError(InvalidInputError):
    """A text file in an encoding we cannot read."""


class MissingColumnsError(InvalidInputError):
    """A table lacks the columns its kind requires."""


class CRSMissingError(InvalidInputError):
    """Coordinates arrive without a CRS and none was given."""


class CRSError(InvalidInputError):
    """A CRS that is unknown, unsupported or contradicts the data."""


class OutOfRegionError(InvalidInputError):
    """Coordinates outside the deployment's configured region."""


class UnsupportedError(CIMError):
    """A format or operation this service does not handle."""


class StoreError(CIMError):
    """The store could not be opened or written."""


@dataclass(frozen=True)
class QCSummary:
    """Counts of QC findings by severity, carried by :class:`QCRefusedError`."""

    errors: int
    warnings: int
    infos: int


class QCRefusedError(CIMError):
    """Ingest refused because survey QC found errors (the store is unchanged)."""

    def __init__(self, message: str, summary: QCSummary, findings: list | None = None) -> None:
        super().__init__(message)
        self.summary = summary
        self.findings = findings or []
