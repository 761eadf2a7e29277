"""package_blob: the unit's workbook and 经费支出.csv move out of the package row, the CSV deflated

Routing and validation update every package row of the year in each run (project_code, validated_key).
SQLite rewrites a whole record on an update, so the blobs inline in those rows were written again each
time: 128 MB for the bench's year of a million lines. In a table of their own they are written once,
and the CSV (plain text) is kept deflated with zlib (store.deflate_csv; 134 -> 18 MB at that scale).

Revision ID: 0007
Revises: 0006
"""

import zlib

from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

_package = sa.table('package', sa.column('id', sa.Integer), sa.column('workbook', sa.LargeBinary),
                    sa.column('expenses_csv', sa.LargeBinary))
_blob = sa.table('package_blob', sa.column('package_id', sa.Integer), sa.column('workbook', sa.LargeBinary),
                 sa.column('expenses_csv_zlib', sa.LargeBinary))


def upgrade() -> None:
    op.create_table(
        'package_blob',
        sa.Column('package_id', sa.Integer(), nullable=False),
        sa.Column('workbook', sa.LargeBinary(), nullable=True),
        sa.Column('expenses_csv_zlib', sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(['package_id'], ['package.id']),
        sa.PrimaryKeyConstraint('package_id'),
    )
    conn = op.get_bind()
    has_blobs = sa.or_(_package.c.workbook.is_not(None), _package.c.expenses_csv.is_not(None))
    for package_id in conn.execute(sa.select(_package.c.id).where(has_blobs)).scalars().all():
        # One version at a time: a year's files need not fit in memory.
        workbook, csv = conn.execute(sa.select(_package.c.workbook, _package.c.expenses_csv)
                                     .where(_package.c.id == package_id)).one()
        conn.execute(sa.insert(_blob).values(package_id=package_id, workbook=workbook,
                                             expenses_csv_zlib=None if csv is None else zlib.compress(csv, 1)))
    # Plain ALTER TABLE … DROP COLUMN (SQLite 3.35+): a batch copy of the table would have to drop
    # the package table that every other table's rows point at.
    op.drop_column('package', 'expenses_csv')
    op.drop_column('package', 'workbook')


def downgrade() -> None:
    op.add_column('package', sa.Column('workbook', sa.LargeBinary(), nullable=True))
    op.add_column('package', sa.Column('expenses_csv', sa.LargeBinary(), nullable=True))
    conn = op.get_bind()
    for package_id in conn.execute(sa.select(_blob.c.package_id)).scalars().all():
        workbook, csv = conn.execute(sa.select(_blob.c.workbook, _blob.c.expenses_csv_zlib)
                                     .where(_blob.c.package_id == package_id)).one()
        conn.execute(sa.update(_package).where(_package.c.id == package_id).values(
            workbook=workbook, expenses_csv=None if csv is None else zlib.decompress(csv)))
    op.drop_table('package_blob')
