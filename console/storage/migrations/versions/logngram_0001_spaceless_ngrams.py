"""Log search finds a part of a run of text written without spaces (Chinese, Japanese).

``log_search_state`` gains ``ngrams_from_id``: the groups the indexer makes from now on
hold, besides each word, each character and pair of neighbouring characters of the runs
of such scripts (console/logs/words.py ``ngrams``), so ``失败`` finds ``数据库连接失败``; the
groups made before (their lines up to the watermark) hold no n-grams, and a search for a
part of a run reads their lines (no filter can rule them out). Set to the watermark plus
one; a database whose lines are not grouped yet (watermark 0) gets 1.

Downgrade: the column goes; the filters keep their n-grams (extra bits, no wrong answer).

Revision ID: logngram_0001_spaceless_ngrams
Revises: pghour_0001_hourly_samples
"""
from alembic import op

revision = "logngram_0001_spaceless_ngrams"
down_revision = "pghour_0001_hourly_samples"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE log_search_state ADD COLUMN ngrams_from_id BIGINT NOT NULL DEFAULT 1")
    op.execute("UPDATE log_search_state SET ngrams_from_id = indexed_id + 1")


def downgrade() -> None:
    op.execute("ALTER TABLE log_search_state DROP COLUMN ngrams_from_id")
