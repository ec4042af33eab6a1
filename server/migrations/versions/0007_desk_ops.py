"""the desk's operations: note mentions, conversation routes (team, snooze), routing rules

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 23:30:00.000000

``note_mentions`` (an agent named in a private note), ``conversation_routes`` (the team a
conversation is routed to, and until when it is snoozed) and ``routing_rules`` (a tenant's rules
sending handed-off conversations to a team). The coordinator rechains ``down_revision``.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'note_mentions',
        sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('agent_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('tenant_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('conversation_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('author_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('read_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['agent_id'], ['agents.id']),
        sa.ForeignKeyConstraint(['message_id'], ['messages.id']),
        sa.PrimaryKeyConstraint('message_id', 'agent_id'),
    )
    with op.batch_alter_table('note_mentions', schema=None) as batch_op:
        batch_op.create_index('ix_note_mentions_agent', ['tenant_id', 'agent_id', 'created_at'], unique=False)

    op.create_table(
        'conversation_routes',
        sa.Column('conversation_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('tenant_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('team_id', sa.String(length=32), nullable=True),
        sa.Column('snoozed_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id']),
        sa.ForeignKeyConstraint(['team_id'], ['teams.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('conversation_id'),
    )
    with op.batch_alter_table('conversation_routes', schema=None) as batch_op:
        batch_op.create_index('ix_conversation_routes_snoozed', ['tenant_id', 'snoozed_until'], unique=False)

    op.create_table(
        'routing_rules',
        sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('tenant_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('team_id', sa.String(length=32), nullable=False),
        sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('keyword', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column('attribute', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column('value', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['team_id'], ['teams.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('routing_rules', schema=None) as batch_op:
        batch_op.create_index('ix_routing_rules_tenant', ['tenant_id', 'position'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('routing_rules', schema=None) as batch_op:
        batch_op.drop_index('ix_routing_rules_tenant')
    op.drop_table('routing_rules')
    with op.batch_alter_table('conversation_routes', schema=None) as batch_op:
        batch_op.drop_index('ix_conversation_routes_snoozed')
    op.drop_table('conversation_routes')
    with op.batch_alter_table('note_mentions', schema=None) as batch_op:
        batch_op.drop_index('ix_note_mentions_agent')
    op.drop_table('note_mentions')
