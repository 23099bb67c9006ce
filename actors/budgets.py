"""Time contracts between processes: how long a clerk may wait for a commit's
outcome, and how long servers keep what answers it (docs/DESIGN.md section 4,
step 6). They live together because one must stay far beyond the other."""

OUTCOME_BUDGET_SECONDS = 30.0
"""How long a commit may take, votes and outcome included."""

RECORD_RETENTION_SECONDS = 4 * OUTCOME_BUDGET_SECONDS
"""Servers keep outcome records this long after every participant acknowledged
them: far beyond any clerk's budget, so no clerk asks about a forgotten
transaction."""
