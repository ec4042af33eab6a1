"""teams of agents and their members

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 20:40:00.000000

``teams`` (unique name per tenant) and ``team_members`` (an agent in a team). The agents'
capacity was already stored (``agents.max_concurrent``).
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'teams',
        sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('tenant_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('tenant_id', 'name'),
    )
    with op.batch_alter_table('teams', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_teams_tenant_id'), ['tenant_id'], unique=False)

    op.create_table(
        'team_members',
        sa.Column('team_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('agent_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('tenant_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['agent_id'], ['agents.id']),
        sa.ForeignKeyConstraint(['team_id'], ['teams.id']),
        sa.PrimaryKeyConstraint('team_id', 'agent_id'),
    )
    with op.batch_alter_table('team_members', schema=None) as batch_op:
        batch_op.create_index('ix_team_members_agent', ['tenant_id', 'agent_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('team_members', schema=None) as batch_op:
        batch_op.drop_index('ix_team_members_agent')
    op.drop_table('team_members')
    with op.batch_alter_table('teams', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_teams_tenant_id'))
    op.drop_table('teams')
