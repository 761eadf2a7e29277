"""package.validated_key: what each package version was last validated against

Revision ID: 0002
Revises: 0001
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: versions stored before this migration have no key and are validated once more.
    op.add_column('package', sa.Column('validated_key', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('package') as batch:
        batch.drop_column('validated_key')
