"""Intake: where changes and procedures come from (webhook, polling, the inbox, gathering a day
from the EMR; offline bundles and NDJSON through the spool), each normalised into patient-days for
the drivers. Never imports ``adapter.pipeline`` or a driver."""
