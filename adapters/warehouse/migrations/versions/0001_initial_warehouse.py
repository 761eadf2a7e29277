"""initial warehouse

Revision ID: 0001
Revises: 
"""

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('export_fingerprint',
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('year', 'name')
    )
    op.create_table('grant_rule',
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('level', sa.String(length=16), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('funding_source', sa.String(length=16), nullable=False),
    sa.Column('amount_fen', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('year', 'level', 'type', 'funding_source')
    )
    op.create_table('package',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=500), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('modified_at', sa.DateTime(), nullable=False),
    sa.Column('mtime_ns', sa.BigInteger(), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=True),
    sa.Column('ingested_at', sa.DateTime(), nullable=False),
    sa.Column('declared_code', sa.String(length=64), nullable=False),
    sa.Column('declared_code_row', sa.Integer(), nullable=True),
    sa.Column('declared_code_header', sa.String(length=64), nullable=False),
    sa.Column('declared_unit', sa.String(length=300), nullable=False),
    sa.Column('project_code', sa.String(length=32), nullable=True),
    sa.Column('intake_status', sa.String(length=16), nullable=False),
    sa.Column('workbook_member', sa.String(length=500), nullable=False),
    sa.Column('workbook', sa.LargeBinary(), nullable=True),
    sa.Column('expenses_csv', sa.LargeBinary(), nullable=True),
    sa.Column('expenses_csv_member', sa.String(length=500), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('year', 'name', 'sha256')
    )
    with op.batch_alter_table('package', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_package_project_code'), ['project_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_package_year'), ['year'], unique=False)

    op.create_table('program_year',
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('notice', sa.String(length=200), nullable=False),
    sa.Column('deadline', sa.Date(), nullable=False),
    sa.Column('team_completion_date', sa.Date(), nullable=False),
    sa.PrimaryKeyConstraint('year')
    )
    op.create_table('project',
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('level', sa.String(length=16), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('host_unit', sa.String(length=200), nullable=False),
    sa.Column('aliases', sa.Text(), nullable=False),
    sa.Column('project_name', sa.String(length=300), nullable=False),
    sa.Column('uscc', sa.String(length=18), nullable=False),
    sa.PrimaryKeyConstraint('year', 'code')
    )
    op.create_table('expense_line',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('package_id', sa.Integer(), nullable=False),
    sa.Column('excel_row', sa.Integer(), nullable=False),
    sa.Column('spent_on', sa.Date(), nullable=True),
    sa.Column('category', sa.String(length=64), nullable=False),
    sa.Column('funding_source', sa.String(length=32), nullable=False),
    sa.Column('amount_fen', sa.BigInteger(), nullable=True),
    sa.Column('amount_typed', sa.String(length=64), nullable=False),
    sa.Column('payee', sa.String(length=300), nullable=False),
    sa.Column('voucher_no', sa.String(length=100), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['package_id'], ['package.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('expense_line', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_expense_line_package_id'), ['package_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_expense_line_voucher_no'), ['voucher_no'], unique=False)

    op.create_table('finding',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('package_id', sa.Integer(), nullable=True),
    sa.Column('project_code', sa.String(length=32), nullable=True),
    sa.Column('stage', sa.String(length=32), nullable=False),
    sa.Column('rule_id', sa.String(length=8), nullable=False),
    sa.Column('severity', sa.String(length=8), nullable=False),
    sa.Column('sheet', sa.String(length=64), nullable=False),
    sa.Column('row', sa.Integer(), nullable=True),
    sa.Column('column', sa.String(length=200), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['package_id'], ['package.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('finding', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_finding_package_id'), ['package_id'], unique=False)
        batch_op.create_index('ix_finding_year_project', ['year', 'project_code'], unique=False)

    op.create_table('national_filing',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('project_code', sa.String(length=32), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('package_id', sa.Integer(), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('idempotency_key', sa.String(length=128), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=False),
    sa.Column('receipt_no', sa.String(length=64), nullable=False),
    sa.Column('corrects_receipt_no', sa.String(length=64), nullable=False),
    sa.Column('server_time', sa.String(length=64), nullable=False),
    sa.Column('raw_response', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['package_id'], ['package.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('idempotency_key'),
    sa.UniqueConstraint('year', 'project_code', 'version')
    )
    with op.batch_alter_table('national_filing', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_national_filing_status'), ['status'], unique=False)

    op.create_table('package_file',
    sa.Column('package_id', sa.Integer(), nullable=False),
    sa.Column('path', sa.String(length=1000), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('content_type', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['package_id'], ['package.id'], ),
    sa.PrimaryKeyConstraint('package_id', 'path')
    )
    op.create_table('package_sheet',
    sa.Column('package_id', sa.Integer(), nullable=False),
    sa.Column('sheet', sa.String(length=64), nullable=False),
    sa.Column('typed_name', sa.String(length=200), nullable=False),
    sa.Column('header_row', sa.Integer(), nullable=True),
    sa.Column('headers', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['package_id'], ['package.id'], ),
    sa.PrimaryKeyConstraint('package_id', 'sheet')
    )
    op.create_table('reconciliation',
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('project_code', sa.String(length=32), nullable=False),
    sa.Column('funding_source', sa.String(length=16), nullable=False),
    sa.Column('package_id', sa.Integer(), nullable=True),
    sa.Column('granted_fen', sa.BigInteger(), nullable=False),
    sa.Column('spent_fen', sa.BigInteger(), nullable=True),
    sa.Column('balance_fen', sa.BigInteger(), nullable=True),
    sa.Column('refund_to', sa.String(length=32), nullable=False),
    sa.Column('refund_declared_fen', sa.BigInteger(), nullable=False),
    sa.Column('refund_to_declared', sa.String(length=64), nullable=False),
    sa.Column('declared_total_fen', sa.BigInteger(), nullable=True),
    sa.Column('audited_total_fen', sa.BigInteger(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['package_id'], ['package.id'], ),
    sa.PrimaryKeyConstraint('year', 'project_code', 'funding_source')
    )
    op.create_table('sheet_row',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('package_id', sa.Integer(), nullable=False),
    sa.Column('sheet', sa.String(length=64), nullable=False),
    sa.Column('excel_row', sa.Integer(), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['package_id'], ['package.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('sheet_row', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sheet_row_package_id'), ['package_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('sheet_row', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sheet_row_package_id'))

    op.drop_table('sheet_row')
    op.drop_table('reconciliation')
    op.drop_table('package_sheet')
    op.drop_table('package_file')
    with op.batch_alter_table('national_filing', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_national_filing_status'))

    op.drop_table('national_filing')
    with op.batch_alter_table('finding', schema=None) as batch_op:
        batch_op.drop_index('ix_finding_year_project')
        batch_op.drop_index(batch_op.f('ix_finding_package_id'))

    op.drop_table('finding')
    with op.batch_alter_table('expense_line', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_expense_line_voucher_no'))
        batch_op.drop_index(batch_op.f('ix_expense_line_package_id'))

    op.drop_table('expense_line')
    op.drop_table('project')
    op.drop_table('program_year')
    with op.batch_alter_table('package', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_package_year'))
        batch_op.drop_index(batch_op.f('ix_package_project_code'))

    op.drop_table('package')
    op.drop_table('grant_rule')
    op.drop_table('export_fingerprint')
