"""attachments: the files table and a message's attachments

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 20:50:00.000000

``down_revision`` is 0002 as written on its branch; it is re-chained after the other 0003 at merge.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'attachments',
        sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('tenant_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('conversation_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('uploader_kind', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column('uploader_id', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('media_type', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('storage_key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column('width', sa.Integer(), nullable=True),
        sa.Column('height', sa.Integer(), nullable=True),
        sa.Column('thumbnail_key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column('thumbnail_type', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column('thumbnail_size', sa.Integer(), nullable=False),
        sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id']),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_attachments_tenant', 'attachments', ['tenant_id'], unique=False)
    op.create_index('ix_attachments_conversation', 'attachments', ['conversation_id'], unique=False)
    op.create_index('ix_attachments_message', 'attachments', ['message_id'], unique=False)
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attachments', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('attachments')
    op.drop_index('ix_attachments_message', table_name='attachments')
    op.drop_index('ix_attachments_conversation', table_name='attachments')
    op.drop_index('ix_attachments_tenant', table_name='attachments')
    op.drop_table('attachments')
