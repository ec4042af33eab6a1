"""the desk: canned responses and labels on conversations

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 21:40:00.000000

``canned_responses`` (a tenant's when ``agent_id`` is null, else one agent's own), ``labels``
(unique name per tenant) and ``conversation_labels`` (a label on a conversation).
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'canned_responses',
        sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('tenant_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('agent_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column('title', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column('shortcut', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['agent_id'], ['agents.id']),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('canned_responses', schema=None) as batch_op:
        batch_op.create_index('ix_canned_responses_owner', ['tenant_id', 'agent_id'], unique=False)

    op.create_table(
        'labels',
        sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('tenant_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('colour', sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('tenant_id', 'name'),
    )
    with op.batch_alter_table('labels', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_labels_tenant_id'), ['tenant_id'], unique=False)

    op.create_table(
        'conversation_labels',
        sa.Column('conversation_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('label_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('tenant_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id']),
        sa.ForeignKeyConstraint(['label_id'], ['labels.id']),
        sa.PrimaryKeyConstraint('conversation_id', 'label_id'),
    )
    with op.batch_alter_table('conversation_labels', schema=None) as batch_op:
        batch_op.create_index('ix_conversation_labels_label', ['tenant_id', 'label_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('conversation_labels', schema=None) as batch_op:
        batch_op.drop_index('ix_conversation_labels_label')
    op.drop_table('conversation_labels')
    with op.batch_alter_table('labels', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_labels_tenant_id'))
    op.drop_table('labels')
    with op.batch_alter_table('canned_responses', schema=None) as batch_op:
        batch_op.drop_index('ix_canned_responses_owner')
    op.drop_table('canned_responses')
