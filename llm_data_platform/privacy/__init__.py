"""Right to be forgotten: who is forgotten, and the purge of their data from every file."""
