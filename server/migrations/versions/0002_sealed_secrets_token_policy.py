"""sealed secrets (text columns), the per-tenant token policy, agent token versions

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 17:50:00.000000

Secrets become text columns holding sealed values (server/core/secretbox.py); rows written in clear
by 0001 keep working and are sealed at the next start. ``key_version`` voids a tenant's tokens on
revoke, ``agents.token_version`` one agent's on password reset or deactivation.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.alter_column('signing_secret', existing_type=sqlmodel.sql.sqltypes.AutoString(length=128),
                              type_=sa.Text(), existing_nullable=False)
        batch_op.add_column(sa.Column('key_version', sa.Integer(), server_default='1', nullable=False))
        batch_op.add_column(sa.Column('user_token_max_ttl_s', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('agent_token_max_ttl_s', sa.Integer(), nullable=True))

    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.add_column(sa.Column('token_version', sa.Integer(), server_default='1', nullable=False))

    with op.batch_alter_table('push_tenant_config', schema=None) as batch_op:
        batch_op.alter_column('vapid_private_key', existing_type=sqlmodel.sql.sqltypes.AutoString(length=200),
                              type_=sa.Text(), existing_nullable=True)
        batch_op.alter_column('webhook_secret', existing_type=sqlmodel.sql.sqltypes.AutoString(length=200),
                              type_=sa.Text(), existing_nullable=True)
        batch_op.alter_column('fcm_service_account', existing_type=sa.JSON(), type_=sa.Text(),
                              existing_nullable=True, postgresql_using='fcm_service_account::text')


def downgrade() -> None:
    # Sealed values do not fit the old widths: downgrade only a database whose secrets are in clear.
    with op.batch_alter_table('push_tenant_config', schema=None) as batch_op:
        batch_op.alter_column('fcm_service_account', existing_type=sa.Text(), type_=sa.JSON(),
                              existing_nullable=True, postgresql_using='fcm_service_account::json')
        batch_op.alter_column('webhook_secret', existing_type=sa.Text(),
                              type_=sqlmodel.sql.sqltypes.AutoString(length=200), existing_nullable=True)
        batch_op.alter_column('vapid_private_key', existing_type=sa.Text(),
                              type_=sqlmodel.sql.sqltypes.AutoString(length=200), existing_nullable=True)

    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.drop_column('token_version')
        batch_op.drop_column('active')

    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.drop_column('agent_token_max_ttl_s')
        batch_op.drop_column('user_token_max_ttl_s')
        batch_op.drop_column('key_version')
        batch_op.alter_column('signing_secret', existing_type=sa.Text(),
                              type_=sqlmodel.sql.sqltypes.AutoString(length=128), existing_nullable=False)
