"""messages people expect: edits and deletes (with their audit), quoted replies, rich content,
emoji reactions

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 23:20:00.000000

New nullable columns on ``messages`` (``edited_at``, ``deleted_at``, ``reply_to_id``, ``quote``,
``rich``), ``message_revisions`` (every earlier text) and ``message_reactions``.
``down_revision`` is 0005 as written on its branch; the coordinator re-chains it at merge.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('edited_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('reply_to_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
        batch_op.add_column(sa.Column('quote', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('rich', sa.JSON(), nullable=True))

    op.create_table(
        'message_revisions',
        sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('tenant_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('conversation_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('attachments', sa.JSON(), nullable=True),
        sa.Column('actor_kind', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column('actor_id', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id']),
        sa.ForeignKeyConstraint(['message_id'], ['messages.id']),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('message_revisions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_message_revisions_tenant_id'), ['tenant_id'], unique=False)
        batch_op.create_index('ix_message_revisions_message', ['message_id', 'created_at'], unique=False)

    op.create_table(
        'message_reactions',
        sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('reactor_kind', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column('reactor_id', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column('emoji', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('tenant_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('conversation_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id']),
        sa.ForeignKeyConstraint(['message_id'], ['messages.id']),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id']),
        sa.PrimaryKeyConstraint('message_id', 'reactor_kind', 'reactor_id', 'emoji'),
    )
    with op.batch_alter_table('message_reactions', schema=None) as batch_op:
        batch_op.create_index('ix_message_reactions_conversation', ['conversation_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('message_reactions', schema=None) as batch_op:
        batch_op.drop_index('ix_message_reactions_conversation')
    op.drop_table('message_reactions')
    with op.batch_alter_table('message_revisions', schema=None) as batch_op:
        batch_op.drop_index('ix_message_revisions_message')
        batch_op.drop_index(batch_op.f('ix_message_revisions_tenant_id'))
    op.drop_table('message_revisions')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('rich')
        batch_op.drop_column('quote')
        batch_op.drop_column('reply_to_id')
        batch_op.drop_column('deleted_at')
        batch_op.drop_column('edited_at')
