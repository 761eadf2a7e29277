"""package_reading: each package version's workbook as intake read it, so validation does not open it again

Revision ID: 0006
Revises: 0005
"""

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'package_reading',
        sa.Column('package_id', sa.Integer(), nullable=False),
        sa.Column('reader_key', sa.String(length=64), nullable=False),
        sa.Column('sheets', sa.LargeBinary(), nullable=False),
        sa.Column('grids', sa.LargeBinary(), nullable=True),
        sa.Column('rows', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['package_id'], ['package.id']),
        sa.PrimaryKeyConstraint('package_id'),
    )


def downgrade() -> None:
    op.drop_table('package_reading')
