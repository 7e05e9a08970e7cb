"""Join the capability branches into one line of history.

Until here each capability added its own branch off ``0001`` and the console applied every
head. From here on there is one head: a new migration's ``down_revision`` is the current
head (``fleetdeck db revision -m MSG`` writes it so, CONTRIBUTING.md "Adding a
migration"). No schema change: a database with every former head applied moves to this revision.

Revision ID: 0015_merge
Revises: 0002_audit, 0003_tiers, 0006_deploys, 0007_sshdeploy, 0009_fleet,
    apischema_0014_user_deleted, notify_0001_outbox, ops_0001_clock_skew, secb_0001_token_owner
"""
revision = "0015_merge"
down_revision = ("0002_audit", "0003_tiers", "0006_deploys", "0007_sshdeploy", "0009_fleet",
                 "apischema_0014_user_deleted", "notify_0001_outbox", "ops_0001_clock_skew",
                 "secb_0001_token_owner")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
