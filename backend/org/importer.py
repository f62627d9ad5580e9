"""CSV import of the org tree and the staff (`flask org import --units F --staff F`).

All or nothing: both files are read and checked in full first, and every bad row is reported
with its file line (the header is line 1) and column. If anything is wrong, nothing is written.
Otherwise everything is applied in one transaction, with one audit entry summarising it.

Units file: `code,name,kind,parent_code`. A unit's kind is one level below its parent's
(group → division → region → store); the parent may be anywhere in the file or already in the
database. Existing codes are updated (name, parent) and the materialised paths recomputed.

Staff file: `wecom_userid,name,org_code,roles[,status]`. Roles are `|`-separated `Role` values
and replace the staff member's roles; status is active (the default) or resigned. Staff are
matched by (corp, userid), the corp being this deployment's `WECOM_CORP_ID`.

Files exported from Excel are UTF-8 with a BOM; both forms are read.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.org.models import ADVISOR_ROLES, PARENT_KIND, OrgKind, OrgUnit, Role, Staff, StaffRole, StaffStatus
from backend.org.open_work import staff_departed, staff_moved
from backend.org.service import org_path
from backend.platform.actors import SystemActor
from backend.platform.audit import write_audit
from backend.platform.db import db, rollback, unit_of_work, utcnow

UNIT_COLUMNS = ("code", "name", "kind", "parent_code")
STAFF_COLUMNS = ("wecom_userid", "name", "org_code", "roles", "status")
OPTIONAL_COLUMNS = {"status"}
ROLE_SEPARATOR = "|"

KIND_LEVEL = {OrgKind.GROUP: 0, OrgKind.DIVISION: 1, OrgKind.REGION: 2, OrgKind.STORE: 3}
# Where each role works (see Staff.org_unit_id); marketing may sit at any level.
ROLE_KIND: dict[Role, OrgKind | None] = {
    **{role: OrgKind.STORE for role in ADVISOR_ROLES},
    Role.STORE_MANAGER: OrgKind.STORE,
    Role.REGION_MANAGER: OrgKind.REGION,
    Role.DIVISION_MANAGER: OrgKind.DIVISION,
    Role.GROUP_ADMIN: OrgKind.GROUP,
    Role.MARKETING: None,
}
_LIMITS = {"code": 64, "unit_name": 128, "wecom_userid": 64, "staff_name": 64}

Echo = Callable[[str], object]


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass
class Row:
    line: int  # file line where the record starts; the header is line 1
    values: dict[str, str]


@dataclass
class Problems:
    messages: list[str] = field(default_factory=list)

    def add(self, file: str, line: int, column: str, message: str) -> None:
        self.messages.append(f"{file} line {line}: {column}: {message}")

    def __bool__(self) -> bool:
        return bool(self.messages)


def read_csv(path: str, columns: tuple[str, ...], problems: Problems) -> list[Row] | None:
    """Rows keyed by column name, or None when the file cannot be read as that table."""
    name = Path(path).name
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        problems.add(name, line, "file", 'not UTF-8 text (in Excel, save as "CSV UTF-8")')
        return None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None or not any(cell.strip() for cell in header):
        problems.add(name, 1, "header", f"the file is empty; expected the columns {','.join(columns)}")
        return None
    header = [cell.strip().lower() for cell in header]
    required = [c for c in columns if c not in OPTIONAL_COLUMNS]
    missing = [c for c in required if c not in header]
    extra = [c for c in header if c not in columns]
    repeated = sorted({c for c in header if header.count(c) > 1})
    if missing:
        problems.add(name, 1, "header", f"missing column(s) {', '.join(missing)}; expected {','.join(columns)}")
    if extra:
        shown = ", ".join(repr(c) if c else "(blank)" for c in extra)
        problems.add(name, 1, "header", f"unexpected column(s) {shown}; expected {','.join(columns)}")
    if repeated:
        problems.add(name, 1, "header", f"column(s) given twice: {', '.join(repeated)}")
    if missing or extra or repeated:
        return None

    rows: list[Row] = []
    previous_end = reader.line_num
    for cells in reader:
        start, previous_end = previous_end + 1, reader.line_num
        if not any(cell.strip() for cell in cells):
            continue  # blank lines and Excel's trailing ",,," rows
        if len(cells) != len(header):
            problems.add(name, start, "row", f"expected {len(header)} fields, found {len(cells)}")
            continue
        values = {column: cell.strip() for column, cell in zip(header, cells, strict=True)}
        for column in columns:
            values.setdefault(column, "")
        rows.append(Row(start, values))
    return rows


# ---------------------------------------------------------------------------------------------
# Validation


@dataclass
class UnitSpec:
    line: int
    code: str
    name: str
    kind: OrgKind
    parent_code: str | None


@dataclass
class StaffSpec:
    line: int
    userid: str
    name: str
    org_code: str
    roles: set[Role]
    status: StaffStatus


@dataclass
class _DbUnit:
    id: int
    kind: OrgKind
    parent_code: str | None


class _Codes:
    """Codes and userids are matched without regard to case, as MariaDB's collation (and WeCom,
    for userids) does: "s01" in a file is the unit "S01" of the database, not a new one that the
    unique key would refuse half-way through the import."""

    def __init__(self, known: list[str]) -> None:
        self._by_fold = {code.casefold(): code for code in known}

    def define(self, code: str) -> str:
        """A code given by a row: the spelling seen first (the database's, else the file's)."""
        return self._by_fold.setdefault(code.casefold(), code)

    def resolve(self, code: str) -> str:
        """A reference to a code: its known spelling, or itself when unknown."""
        return self._by_fold.get(code.casefold(), code)


def _db_units(session: Session) -> dict[str, _DbUnit]:
    rows = session.execute(select(OrgUnit.id, OrgUnit.code, OrgUnit.kind, OrgUnit.parent_id)).all()
    code_of = {r.id: r.code for r in rows}
    return {r.code: _DbUnit(r.id, r.kind, code_of.get(r.parent_id)) for r in rows}


def _required(problems: Problems, file: str, row: Row, column: str, limit: int | None = None) -> str | None:
    value = row.values[column]
    if not value:
        problems.add(file, row.line, column, "required")
        return None
    if limit is not None and len(value) > limit:
        problems.add(file, row.line, column, f"at most {limit} characters, found {len(value)}")
        return None
    return value


def _kind_name(kind: OrgKind | None) -> str:
    return kind.value if kind else "none"


def validate_units(
    file: str, rows: list[Row], db_units: dict[str, _DbUnit], codes: _Codes, problems: Problems
) -> tuple[list[UnitSpec], dict[str, int]]:
    """Valid specs and the line of every code given in the file (valid or not)."""
    first_line: dict[str, int] = {}
    specs: dict[str, UnitSpec] = {}
    for row in rows:
        code = _required(problems, file, row, "code", _LIMITS["code"])
        name = _required(problems, file, row, "name", _LIMITS["unit_name"])
        kind_raw = _required(problems, file, row, "kind")
        parent_code = row.values["parent_code"] or None
        ok = code is not None and name is not None and kind_raw is not None
        if code is not None:
            code = codes.define(code)
            if code in first_line:
                problems.add(file, row.line, "code", f"duplicate code '{code}' (first on line {first_line[code]})")
                continue
            first_line[code] = row.line
        kind = None
        if kind_raw is not None:
            try:
                kind = OrgKind(kind_raw.lower())
            except ValueError:
                choices = ", ".join(k.value for k in OrgKind)
                problems.add(file, row.line, "kind", f"unknown kind '{kind_raw}' (one of {choices})")
                ok = False
        if kind is not None:
            if kind == OrgKind.GROUP and parent_code:
                problems.add(file, row.line, "parent_code", "a group has no parent; leave it empty")
                ok = False
            elif kind != OrgKind.GROUP and not parent_code:
                problems.add(file, row.line, "parent_code", f"required for a {kind.value}")
                ok = False
            existing = db_units.get(code) if code else None
            if existing is not None and existing.kind != kind:
                problems.add(
                    file,
                    row.line,
                    "kind",
                    f"'{code}' is already a {existing.kind.value}; the kind of an existing unit cannot change",
                )
                ok = False
        if ok and code is not None and name is not None and kind is not None:
            specs[code] = UnitSpec(row.line, code, name, kind, parent_code)

    def parent_of(code: str) -> str | None:
        if code in specs:
            return specs[code].parent_code
        if code in db_units:
            return db_units[code].parent_code
        return None

    for spec in specs.values():
        if spec.parent_code is not None:
            spec.parent_code = codes.resolve(spec.parent_code)
    for spec in specs.values():
        if spec.parent_code is None:
            continue
        if spec.parent_code not in first_line and spec.parent_code not in db_units:
            problems.add(
                file,
                spec.line,
                "parent_code",
                f"unknown parent '{spec.parent_code}' (not in this file nor in the database)",
            )
            continue
        cycle = _cycle_from(spec.code, parent_of)
        if cycle:
            problems.add(file, spec.line, "parent_code", "cycle: " + " → ".join(cycle))
            continue
        if spec.parent_code in specs:
            parent_kind: OrgKind | None = specs[spec.parent_code].kind
        elif spec.parent_code in first_line:
            continue  # the parent's own row is wrong and reported; do not pile on
        else:
            parent_kind = db_units[spec.parent_code].kind
        expected = PARENT_KIND[spec.kind]
        if parent_kind != expected:
            problems.add(
                file,
                spec.line,
                "parent_code",
                f"a {spec.kind.value}'s parent must be a {_kind_name(expected)}; "
                f"'{spec.parent_code}' is a {_kind_name(parent_kind)}",
            )
    return list(specs.values()), first_line


def _cycle_from(code: str, parent_of: Callable[[str], str | None]) -> list[str] | None:
    chain = [code]
    current = parent_of(code)
    while current is not None:
        if current in chain:
            return chain[chain.index(current) :] + [current]
        chain.append(current)
        current = parent_of(current)
    return None


def validate_staff(
    file: str,
    rows: list[Row],
    unit_kinds: dict[str, OrgKind | None],
    codes: _Codes,
    problems: Problems,
) -> list[StaffSpec]:
    """`unit_kinds`: every known unit code → its kind (None when its row in the units file is bad)."""
    first_line: dict[str, int] = {}
    specs: list[StaffSpec] = []
    for row in rows:
        userid = _required(problems, file, row, "wecom_userid", _LIMITS["wecom_userid"])
        name = _required(problems, file, row, "name", _LIMITS["staff_name"])
        org_code = _required(problems, file, row, "org_code")
        ok = userid is not None and name is not None and org_code is not None
        if userid is not None:
            if userid.casefold() in first_line:
                first = first_line[userid.casefold()]
                problems.add(file, row.line, "wecom_userid", f"duplicate userid '{userid}' (first on line {first})")
                continue
            first_line[userid.casefold()] = row.line
        unit_kind = None
        if org_code is not None:
            org_code = codes.resolve(org_code)
            if org_code not in unit_kinds:
                problems.add(file, row.line, "org_code", f"unknown org unit '{org_code}'")
                ok = False
            else:
                unit_kind = unit_kinds[org_code]

        roles: set[Role] = set()
        parts = [p.strip() for p in row.values["roles"].split(ROLE_SEPARATOR) if p.strip()]
        if not parts:
            problems.add(file, row.line, "roles", f"at least one role is required ({ROLE_SEPARATOR}-separated)")
            ok = False
        for part in parts:
            try:
                roles.add(Role(part.lower()))
            except ValueError:
                problems.add(file, row.line, "roles", f"unknown role '{part}'")
                ok = False
        for role in sorted(roles):
            where = ROLE_KIND[role]
            if unit_kind is not None and where is not None and unit_kind != where:
                problems.add(
                    file,
                    row.line,
                    "roles",
                    f"a {role.value} works at a {where.value}; '{org_code}' is a {unit_kind.value}",
                )
                ok = False

        status_raw = row.values["status"].lower() or StaffStatus.ACTIVE.value
        try:
            status = StaffStatus(status_raw)
        except ValueError:
            problems.add(file, row.line, "status", f"unknown status '{row.values['status']}' (active or resigned)")
            ok = False
        if ok and userid is not None and name is not None and org_code is not None:
            specs.append(StaffSpec(row.line, userid, name, org_code, roles, status))
    return specs


# ---------------------------------------------------------------------------------------------
# Applying


@dataclass
class Tally:
    created: int = 0
    updated: int = 0
    unchanged: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"created": self.created, "updated": self.updated, "unchanged": self.unchanged}

    def __str__(self) -> str:
        return f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged"


def _progress(items: list, label: str) -> Any:
    return click.progressbar(items, label=label, show_pos=True)


def apply_units(session: Session, specs: list[UnitSpec]) -> Tally:
    tally = Tally()
    by_code = {u.code: u for u in session.scalars(select(OrgUnit))}
    # Parents before children: the kind decides the level.
    ordered = sorted(specs, key=lambda s: (KIND_LEVEL[s.kind], s.line))
    with _progress(ordered, "org units") as bar:
        for spec in bar:
            parent_id = by_code[spec.parent_code].id if spec.parent_code else None
            unit = by_code.get(spec.code)
            if unit is None:
                unit = OrgUnit(code=spec.code, name=spec.name, kind=spec.kind, parent_id=parent_id, path="/")
                session.add(unit)
                session.flush()  # the id is part of the path
                by_code[spec.code] = unit
                tally.created += 1
            elif unit.name != spec.name or unit.parent_id != parent_id:
                unit.name, unit.parent_id = spec.name, parent_id
                tally.updated += 1
            else:
                tally.unchanged += 1
    session.flush()
    _recompute_paths(list(by_code.values()))
    session.flush()
    return tally


def _recompute_paths(units: list[OrgUnit]) -> None:
    """Every path from the parent links: a moved unit drags its whole subtree along."""
    by_id = {u.id: u for u in units}
    paths: dict[int, str] = {}

    def path_of(unit: OrgUnit) -> str:
        if unit.id not in paths:
            parent = by_id.get(unit.parent_id) if unit.parent_id is not None else None
            paths[unit.id] = org_path(None, unit.id) if parent is None else f"{path_of(parent)}{unit.id}/"
        return paths[unit.id]

    for unit in sorted(units, key=lambda u: KIND_LEVEL[u.kind]):
        new = path_of(unit)
        if unit.path != new:
            unit.path = new


def apply_staff(session: Session, corp_id: str, specs: list[StaffSpec]) -> tuple[Tally, int]:
    tally, roles_changed = Tally(), 0
    unit_ids = dict(session.execute(select(OrgUnit.code, OrgUnit.id)).all())
    # The corp's whole staff (thousands at most): matched without regard to case, see _Codes.
    existing = {s.wecom_userid.casefold(): s for s in session.scalars(select(Staff).where(Staff.corp_id == corp_id))}
    now = utcnow()
    with _progress(specs, "staff") as bar:
        for spec in bar:
            org_unit_id = unit_ids[spec.org_code]
            staff = existing.get(spec.userid.casefold())
            if staff is None:
                staff = Staff(
                    corp_id=corp_id,
                    wecom_userid=spec.userid,
                    name=spec.name,
                    org_unit_id=org_unit_id,
                    status=spec.status,
                    resigned_at=now if spec.status == StaffStatus.RESIGNED else None,
                )
                staff.role_rows = [StaffRole(role=r) for r in sorted(spec.roles)]
                session.add(staff)
                tally.created += 1
                continue
            changed = False
            # On duty here and after, but at another store or without a role they had: the
            # open work they can no longer hold goes back to its store (`staff_moved`).
            moved = staff.status == StaffStatus.ACTIVE == spec.status and (
                staff.org_unit_id != org_unit_id or bool(staff.roles - spec.roles)
            )
            if (staff.name, staff.org_unit_id, staff.status) != (spec.name, org_unit_id, spec.status):
                departed = staff.status == StaffStatus.ACTIVE and spec.status == StaffStatus.RESIGNED
                if staff.status != spec.status:
                    staff.resigned_at = now if spec.status == StaffStatus.RESIGNED else None
                staff.name, staff.org_unit_id, staff.status = spec.name, org_unit_id, spec.status
                changed = True
                if departed:
                    session.flush()
                    staff_departed(session, staff, now)
            if staff.roles != spec.roles:
                # Keep the rows of roles that stay; only the difference is deleted / inserted.
                staff.role_rows = [r for r in staff.role_rows if r.role in spec.roles] + [
                    StaffRole(role=r) for r in sorted(spec.roles - staff.roles)
                ]
                roles_changed += 1
                changed = True
            if moved:
                session.flush()
                staff_moved(session, staff, now)
            if changed:
                tally.updated += 1
            else:
                tally.unchanged += 1
    session.flush()
    return tally, roles_changed


# ---------------------------------------------------------------------------------------------
# The command


def import_files(units_csv: str | None, staff_csv: str | None, echo: Echo = click.echo) -> bool:
    """Check both files completely, then apply them in one transaction. False if nothing was
    imported (every problem has been echoed)."""
    if not units_csv and not staff_csv:
        echo("nothing to import: give --units and/or --staff")
        return False
    session = db.session()
    corp_id = current_app.config["WECOM_CORP_ID"]
    problems = Problems()

    unit_rows = read_csv(units_csv, UNIT_COLUMNS, problems) if units_csv else []
    staff_rows = read_csv(staff_csv, STAFF_COLUMNS, problems) if staff_csv else []
    db_units = _db_units(session)
    codes = _Codes(list(db_units))
    unit_specs: list[UnitSpec] = []
    unit_kinds: dict[str, OrgKind | None] = {code: u.kind for code, u in db_units.items()}
    if unit_rows:
        unit_specs, unit_lines = validate_units(Path(units_csv or "").name, unit_rows, db_units, codes, problems)
        unit_kinds.update({code: None for code in unit_lines})  # a bad row is known, kind unknown
        unit_kinds.update({s.code: s.kind for s in unit_specs})
    staff_specs = validate_staff(Path(staff_csv or "").name, staff_rows or [], unit_kinds, codes, problems)
    if problems:
        rollback(session)  # end the read-only transaction
        for message in problems.messages:
            echo(message)
        echo(f"{len(problems.messages)} problem(s) found: nothing was imported")
        return False

    try:
        with unit_of_work(session):
            units = apply_units(session, unit_specs) if unit_specs else Tally()
            staff, roles_changed = apply_staff(session, corp_id, staff_specs) if staff_specs else (Tally(), 0)
            write_audit(
                session,
                SystemActor("org_import"),
                "org.imported",
                "org_import",
                _fingerprint(units_csv, staff_csv),
                {
                    "files": {
                        "units": Path(units_csv).name if units_csv else None,
                        "staff": Path(staff_csv).name if staff_csv else None,
                    },
                    "units": units.as_dict(),
                    "staff": {**staff.as_dict(), "roles_changed": roles_changed},
                },
            )
    except IntegrityError as exc:
        echo(f"the database changed during the import ({exc.orig}); nothing was imported, run it again")
        return False
    echo(f"imported org units: {units}; staff: {staff} ({roles_changed} with new roles)")
    return True


def _fingerprint(*paths: str | None) -> str:
    """Identifies the imported files in the audit log (same content, same id)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes() if path else b"")
        digest.update(b"\0")
    return digest.hexdigest()[:32]
