"""photo_facts (each photo's size, EXIF date and perceptual hash, by content) and service_indicator

Revision ID: 0004
Revises: 0003
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'photo_facts',
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('width', sa.Integer(), nullable=True),
        sa.Column('height', sa.Integer(), nullable=True),
        sa.Column('taken_at', sa.DateTime(), nullable=True),
        sa.Column('phash', sa.String(length=16), nullable=False),
        sa.Column('error', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('sha256'),
    )
    op.create_table(
        'service_indicator',
        sa.Column('year', sa.Integer(), nullable=False),
        sa.Column('project_code', sa.String(length=32), nullable=False),
        sa.Column('package_id', sa.Integer(), nullable=False),
        sa.Column('provisional', sa.Boolean(), nullable=False),
        *[sa.Column(name, sa.Integer(), nullable=False) for name in (
            'activities', 'service_days', 'experts', 'expert_days', 'people_served', 'trainees',
            'problems_solved', 'districts', 'photos', 'photos_without_exif')],
        sa.Column('spent_fen', sa.BigInteger(), nullable=False),
        sa.Column('spent_by_category', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['package_id'], ['package.id']),
        sa.PrimaryKeyConstraint('year', 'project_code'),
    )


def downgrade() -> None:
    op.drop_table('service_indicator')
    op.drop_table('photo_facts')
