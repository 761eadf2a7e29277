"""expense_total: each package's expense lines counted by funding source and category

Reconciliation (which packages' money can be reconciled, and what each spent per source) and the
service indicators (spending per category) each made a pass over the year's expense lines at every
run: 0.3 and 0.4 s at a million lines in SQLite, for totals that change only when a package is
validated. The worker that validates the lines now counts them too; the lines already in a warehouse
are counted here, once.

Revision ID: 0008
Revises: 0007
"""

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

_line = sa.table('expense_line', sa.column('package_id', sa.Integer), sa.column('funding_source', sa.String),
                 sa.column('category', sa.String), sa.column('amount_fen', sa.BigInteger))


def upgrade() -> None:
    op.create_table(
        'expense_total',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('package_id', sa.Integer(), nullable=False),
        sa.Column('funding_source', sa.String(length=32), nullable=False),
        sa.Column('category', sa.String(length=64), nullable=False),
        sa.Column('lines', sa.Integer(), nullable=False),
        sa.Column('amounts', sa.Integer(), nullable=False),
        sa.Column('fen', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['package_id'], ['package.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_expense_total_package_id', 'expense_total', ['package_id'], unique=False)
    counted = (sa.select(_line.c.package_id, _line.c.funding_source, _line.c.category, sa.func.count(),
                         sa.func.count(_line.c.amount_fen), sa.func.coalesce(sa.func.sum(_line.c.amount_fen), 0))
               .group_by(_line.c.package_id, _line.c.funding_source, _line.c.category))
    total = sa.table('expense_total', *(sa.column(name) for name in (
        'package_id', 'funding_source', 'category', 'lines', 'amounts', 'fen')))
    op.execute(sa.insert(total).from_select(
        ['package_id', 'funding_source', 'category', 'lines', 'amounts', 'fen'], counted))


def downgrade() -> None:
    op.drop_index('ix_expense_total_package_id', table_name='expense_total')
    op.drop_table('expense_total')
