"""package_blob: the unit's workbook and 经费支出.csv move out of the package row

Routing and validation update every package row of the year in each run (project_code, validated_key).
SQLite rewrites a whole record on an update, so the blobs inline in those rows were written again each
time: 128 MB for the bench's year of a million lines. In a table of their own they are written once.

Revision ID: 0007
Revises: 0006
"""

from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'package_blob',
        sa.Column('package_id', sa.Integer(), nullable=False),
        sa.Column('workbook', sa.LargeBinary(), nullable=True),
        sa.Column('expenses_csv', sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(['package_id'], ['package.id']),
        sa.PrimaryKeyConstraint('package_id'),
    )
    op.execute("INSERT INTO package_blob (package_id, workbook, expenses_csv) "
               "SELECT id, workbook, expenses_csv FROM package "
               "WHERE workbook IS NOT NULL OR expenses_csv IS NOT NULL")
    # Plain ALTER TABLE … DROP COLUMN (SQLite 3.35+): a batch copy of the table would have to drop
    # the package table that every other table's rows point at.
    op.drop_column('package', 'expenses_csv')
    op.drop_column('package', 'workbook')


def downgrade() -> None:
    op.add_column('package', sa.Column('workbook', sa.LargeBinary(), nullable=True))
    op.add_column('package', sa.Column('expenses_csv', sa.LargeBinary(), nullable=True))
    op.execute("UPDATE package SET "
               "workbook = (SELECT b.workbook FROM package_blob b WHERE b.package_id = package.id), "
               "expenses_csv = (SELECT b.expenses_csv FROM package_blob b WHERE b.package_id = package.id)")
    op.drop_table('package_blob')
