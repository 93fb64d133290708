"""An audit log of who changed what in the store.

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(50), nullable=False, index=True),
        sa.Column("target", sa.String(1000), nullable=False),
        sa.Column("detail", sa.JSON, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("audit_log")
