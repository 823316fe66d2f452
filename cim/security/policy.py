"""Who may read what: roles, principals and the one data-access rule every reader applies.

Datasets carry a grade (GB/T 43697-2024: 核心 / 重要 / 一般) and a secret flag (mapping secrecy). The rule
(:func:`dataset_access`) is the single place that decides, for a principal and a dataset, whether the data is
withheld, served coarsened, or served in full; features, tiles, analyses and exports all ask it.

=========  ==========================================================================================
role       reads
=========  ==========================================================================================
public     一般 datasets that are not secret, **coarsened** (positions snapped to :data:`PUBLIC_GRID_M`,
           depths/heights withheld); never 重要/核心 or secret data; never tiles of pipe networks
planner    一般 and 重要 in full; secret datasets only when they are 一般/重要; never 核心
reviewer   as planner (BIM review needs the pipes around a site)
platform   一般 and 重要 in full, not secret (upstream platforms get shareable data only)
admin      everything
=========  ==========================================================================================

"就高从严": an unknown grade is treated as 核心.

What COARSE means in practice (applied by :mod:`cim.security.scope`, the one place that serves data under
this rule): point positions and segment ends snapped to cell centres, other geometries reduced to their
snapped centroid, extents widened to the grid; ground/invert/top heights, depths, 3D lengths, slopes,
meshes, free attributes (``attrs``), provenance and source file names withheld; QC findings and BIM
submissions withheld entirely. A role that may not read a dataset sees no trace of it (an unknown id).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

from cim.errors import CIMError


class Role(StrEnum):
    """The service's roles."""

    PUBLIC = "public"
    PLANNER = "planner"
    REVIEWER = "reviewer"
    PLATFORM = "platform"
    ADMIN = "admin"


class Access(IntEnum):
    """How a dataset is served to a principal (ordered: more is more)."""

    NONE = 0
    COARSE = 1
    FULL = 2


GRADES = ("一般", "重要", "核心")
#: Grid (m) public positions are snapped to; heights and depths are withheld for the public.
PUBLIC_GRID_M = 50.0


@dataclass(frozen=True)
class Principal:
    """An authenticated caller (or the anonymous public)."""

    id: str
    role: Role
    name: str = ""
    via: str = "anonymous"  # anonymous | api_key | jwt
    scopes: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


ANONYMOUS = Principal(id="anonymous", role=Role.PUBLIC)


class AuthenticationError(CIMError):
    """Credentials that were given but are not valid (unknown, revoked or expired key; bad token): HTTP 401.

    ``scheme`` (``Bearer`` or ``ApiKey``) and ``code`` (RFC 6750 ``invalid_token``/``invalid_request``) make the
    ``WWW-Authenticate`` challenge of the response.
    """

    def __init__(self, message: str, *, scheme: str = "Bearer", code: str | None = "invalid_token") -> None:
        super().__init__(message)
        self.scheme, self.code = scheme, code


class ForbiddenError(CIMError):
    """A known caller asking for something its role may not do (or a write through a read-only view): HTTP 403."""


def _grade_rank(grade: str | None) -> int:
    try:
        return GRADES.index(grade or "")
    except ValueError:
        return len(GRADES) - 1  # 就高从严: unknown grades count as 核心


def dataset_access(principal: Principal, grade: str | None, secret: bool) -> Access:
    """How ``principal`` may read a dataset of ``grade`` (核心/重要/一般) and ``secret`` flag."""
    rank = _grade_rank(grade)
    role = principal.role
    if role is Role.ADMIN:
        return Access.FULL
    if role is Role.PUBLIC:
        return Access.COARSE if rank == 0 and not secret else Access.NONE
    if role in (Role.PLANNER, Role.REVIEWER):
        return Access.FULL if rank <= 1 else Access.NONE
    if role is Role.PLATFORM:
        return Access.FULL if rank <= 1 and not secret else Access.NONE
    return Access.NONE


def coarsen_xy(x: float, y: float, grid: float = PUBLIC_GRID_M) -> tuple[float, float]:
    """A projected position snapped to the centre of its ``grid`` cell (what the public sees)."""
    return ((x // grid) + 0.5) * grid, ((y // grid) + 0.5) * grid
