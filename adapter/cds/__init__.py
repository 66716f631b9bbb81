"""CDS Hooks 2.0 (issue 17): the day's findings as cards before the note is signed, from the same
rules the charges come from."""
