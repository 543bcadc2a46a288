"""Reading an enum column: a stored name is its member, and a name that is no member's is an error.

A name the code does not know (a row written by other code, or by a version that had another
member) once read as None, which the engine took for "no status". The read is checked on each
dialect's own processor, as SQLAlchemy builds it, without a database.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Dialect
from sqlalchemy.dialects import mysql, postgresql, sqlite

from stabilize.models import SyntheticStageOwner, WorkflowStatus
from stabilize.persistence.sql.types import EnumName

DIALECTS: dict[str, Dialect] = {
    "sqlite": sqlite.pysqlite.dialect(),
    "postgresql": postgresql.psycopg.dialect(),
    "mysql": mysql.pymysql.dialect(),
}


def _read(column_type: EnumName[WorkflowStatus], dialect: Dialect, stored: object) -> object:
    process = column_type.dialect_impl(dialect).result_processor(dialect, None)
    assert process is not None
    return process(stored)


@pytest.mark.parametrize("dialect", DIALECTS.values(), ids=DIALECTS.keys())
def test_every_stored_name_reads_as_its_member_and_null_as_none(dialect: Dialect) -> None:
    column_type = EnumName(WorkflowStatus)
    for member in WorkflowStatus:
        assert _read(column_type, dialect, member.name) is member
    assert _read(column_type, dialect, None) is None


@pytest.mark.parametrize("dialect", DIALECTS.values(), ids=DIALECTS.keys())
@pytest.mark.parametrize("stored", ["BOGUS", "running", "", "SUCCEEDED "])
def test_a_stored_name_that_is_no_member_is_a_value_error_naming_enum_and_value(
    dialect: Dialect, stored: str
) -> None:
    with pytest.raises(ValueError) as refused:
        _read(EnumName(WorkflowStatus), dialect, stored)
    names = ", ".join(WorkflowStatus.__members__)
    assert str(refused.value) == (
        f"a WorkflowStatus column holds {stored!r}, which is not a WorkflowStatus name (one of {names})"
    )


def test_an_optional_column_reads_null_as_none_and_still_refuses_an_unknown_name() -> None:
    column_type = EnumName(SyntheticStageOwner, optional=True)
    dialect = DIALECTS["sqlite"]
    process = column_type.dialect_impl(dialect).result_processor(dialect, None)
    assert process is not None
    assert process(None) is None
    assert process("STAGE_AFTER") is SyntheticStageOwner.STAGE_AFTER
    with pytest.raises(ValueError, match=r"a SyntheticStageOwner column holds 'STAGE_SIDEWAYS'"):
        process("STAGE_SIDEWAYS")


def test_a_value_of_a_member_is_not_read_as_its_name() -> None:
    """Names only: a member's value (a tuple, ``("RUNNING", False, False)``) is not a stored name."""
    refusal = r"holds \('RUNNING', False, False\), which is not a WorkflowStatus name"
    with pytest.raises(ValueError, match=refusal):
        _read(EnumName(WorkflowStatus), DIALECTS["postgresql"], WorkflowStatus.RUNNING.value)
