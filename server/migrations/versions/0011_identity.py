"""identity verification for the widget: a tenant's identity secret and whether it is required

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-02 00:05:00.000000

``tenants.identity_secret`` (sealed like the signing secret; None until an admin first reads it) and
``tenants.identity_verification_required`` (true: an unsigned user id gets an anonymous session).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0011'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('identity_secret', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('identity_verification_required', sa.Boolean(), server_default=sa.true(),
                                      nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.drop_column('identity_verification_required')
        batch_op.drop_column('identity_secret')
