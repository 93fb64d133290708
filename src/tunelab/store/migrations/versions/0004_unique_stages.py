"""At most one production model version and one active key per name, enforced by the
database: two promotions (or two `keys create`) at once can no longer both win.

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    # a store written before this revision may hold the duplicates the indexes forbid:
    # keep the newest production version and the newest active key of each name
    productions = connection.execute(sa.text(
        "SELECT id FROM model_versions WHERE stage = 'production' "
        "ORDER BY promoted_at DESC, id DESC")).scalars().all()
    for version_id in productions[1:]:
        connection.execute(sa.text("UPDATE model_versions SET stage = 'archived' "
                                   "WHERE id = :id"), {"id": version_id})
    seen: set[str] = set()
    for key_id, name in connection.execute(sa.text(
            "SELECT id, name FROM api_keys WHERE revoked_at IS NULL ORDER BY id DESC")):
        if name in seen:
            connection.execute(sa.text("UPDATE api_keys SET revoked_at = CURRENT_TIMESTAMP "
                                       "WHERE id = :id"), {"id": key_id})
        seen.add(name)
    op.create_index("one_production_version", "model_versions", ["stage"], unique=True,
                    sqlite_where=sa.text("stage = 'production'"),
                    postgresql_where=sa.text("stage = 'production'"))
    op.create_index("one_active_key_per_name", "api_keys", ["name"], unique=True,
                    sqlite_where=sa.text("revoked_at IS NULL"),
                    postgresql_where=sa.text("revoked_at IS NULL"))


def downgrade() -> None:
    op.drop_index("one_active_key_per_name", "api_keys")
    op.drop_index("one_production_version", "model_versions")
