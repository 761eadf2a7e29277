"""waiver and waiver_revocation (operators' decisions about findings, append-only);
exported_project_state (what the last export showed of each project)

Revision ID: 0003
Revises: 0002
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('waiver',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('project_code', sa.String(length=32), nullable=False),
    sa.Column('rule_id', sa.String(length=8), nullable=False),
    sa.Column('package', sa.String(length=500), nullable=False),
    sa.Column('sheet', sa.String(length=200), nullable=False),
    sa.Column('row', sa.Integer(), nullable=True),
    sa.Column('until', sa.Date(), nullable=True),
    sa.Column('recorded_by', sa.String(length=100), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_waiver_year_project', 'waiver', ['year', 'project_code'], unique=False)
    op.create_table('waiver_revocation',
    sa.Column('waiver_id', sa.Integer(), nullable=False),
    sa.Column('revoked_by', sa.String(length=100), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('revoked_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['waiver_id'], ['waiver.id'], ),
    sa.PrimaryKeyConstraint('waiver_id')
    )
    op.create_table('exported_project_state',
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('project_code', sa.String(length=32), nullable=False),
    sa.Column('state', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('year', 'project_code')
    )


def downgrade() -> None:
    op.drop_table('exported_project_state')
    op.drop_table('waiver_revocation')
    op.drop_index('ix_waiver_year_project', table_name='waiver')
    op.drop_table('waiver')
