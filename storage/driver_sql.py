"""The hot writes, compiled once per dialect and sent to the driver as rows of values.

A Core statement executed with a list of rows costs, besides the statement itself, SQLAlchemy's
per-execution work: the compiled cache's lookup and, for every row, `construct_params` and the
bind processors through `_init_compiled` (under webhook load, most of the group-commit
writer's time that was not SQLite's; docs/benchmarks.md). The writer's statements never
change, so `DriverStatement` compiles each once per dialect, keeps its SQL (qmark for SQLite,
`$1` for asyncpg) and the bind processors of its parameters in order, and executes it with
`exec_driver_sql` and plain tuples: one executemany, values encoded by the same processors
SQLAlchemy would have applied (the same bytes are stored: tests/storage/test_driver_sql.py).
Statement events (`before_cursor_execute`), the wrapping of driver errors (`IntegrityError`),
hidden parameters and the asyncpg adapter's transaction stay SQLAlchemy's.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, bindparam, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlmodel.ext.asyncio.session import AsyncSession

Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    # Per positional parameter: the key of a row's value and its processor, or (None, the
    # constant's value already processed) for a value bound in the statement itself.
    parameters: tuple[tuple[str | None, Processor, Any], ...]

    def values(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        try:
            return tuple(
                [
                    constant if key is None else row[key] if process is None else process(row[key])
                    for key, process, constant in self.parameters
                ]
            )
        except KeyError as exc:
            missing = sorted({key for key, _, _ in self.parameters if key} - set(row))
            raise KeyError(f"a row for {self.sql[:60]!r}... lacks {missing}") from exc


class DriverStatement:
    """A statement executed with rows (mappings from its parameters' names to values) as
    one executemany on the driver (see the module docstring). Every parameter the statement
    leaves unbound must be in every row; defaults of columns left out are not applied."""

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        # By dialect object: an engine's dialect carries its JSON serializer.
        self._compiled: weakref.WeakKeyDictionary[Dialect, _Compiled] = weakref.WeakKeyDictionary()

    def compiled(self, dialect: Dialect) -> _Compiled:
        found = self._compiled.get(dialect)
        if found is None:
            found = self._compiled[dialect] = _compile(self.statement, dialect)
        return found

    async def run(self, session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> int:
        """Execute it once per row, in the session's transaction; the rows changed (-1 when
        the driver does not say)."""
        if not rows:
            return 0
        connection = await session.connection()
        compiled = self.compiled(connection.dialect)
        values = [compiled.values(row) for row in rows]
        result = await connection.exec_driver_sql(
            compiled.sql, values if len(values) > 1 else values[0]
        )
        rowcount: int = result.rowcount
        return rowcount


def _compile(statement: Any, dialect: Dialect) -> _Compiled:
    compiled = statement.compile(dialect=dialect)
    assert isinstance(compiled, SQLCompiler)
    names = compiled.positiontup
    if names is None:
        raise ValueError(f"dialect {dialect.name} does not bind positionally")
    parameters: list[tuple[str | None, Processor, Any]] = []
    for name in names:
        bind = compiled.binds[name]
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if bind.callable is not None:
            raise ValueError(f"parameter {name} is computed at execution: not supported")
        if bind.expanding or bind.literal_execute:
            raise ValueError(f"parameter {name} is rendered at execution (IN list): not supported")
        if bind.required:
            if name != bind.key:
                raise ValueError(f"parameter {bind.key} is renamed {name} in the statement")
            parameters.append((bind.key, process, None))
        else:
            value = bind.effective_value
            parameters.append((None, None, value if process is None else process(value)))
    return _Compiled(compiled.string, tuple(parameters))


def insert_rows(table: Table) -> DriverStatement:
    """An INSERT of whole rows of `table`: every column's value in every row."""
    return DriverStatement(
        insert(table).values(
            {column.name: bindparam(column.name, type_=column.type) for column in table.c}
        )
    )
