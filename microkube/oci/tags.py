"""Listing endpoints' data: tags of a repository and the catalog, paginated.

Both lists are in lexical order and paginated the spec's way: ``n`` caps the
count, ``last`` resumes after a value, and when more values remain the HTTP
layer adds ``Link: <…?n=N&last=X>; rel="next"``.  We fetch ``n + 1`` rows to
know whether there is a next page without a second query.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from microkube.oci import schema

MAX_PAGE = 10_000
"""Largest ``n`` honoured; larger requests are clamped."""


@dataclass(frozen=True)
class Page:
    items: list[str]
    more: bool


def _page(
    conn: sa.Connection,
    column: sa.ColumnElement[str],
    query: sa.Select[tuple[str]],
    n: int | None,
    last: str | None,
) -> Page:
    if last:
        query = query.where(column > last)
    query = query.order_by(column)
    limit = MAX_PAGE if n is None else min(max(n, 0), MAX_PAGE)
    if limit == 0:
        return Page([], False)
    rows = [str(r[0]) for r in conn.execute(query.limit(limit + 1))]
    return Page(rows[:limit], len(rows) > limit)


def list_tags(conn: sa.Connection, repository: str, n: int | None, last: str | None) -> Page:
    t = schema.tags
    query = sa.select(t.c.tag).where(t.c.repository == repository)
    return _page(conn, t.c.tag, query, n, last)


def catalog(conn: sa.Connection, n: int | None, last: str | None) -> Page:
    r = schema.repositories
    return _page(conn, r.c.name, sa.select(r.c.name), n, last)
