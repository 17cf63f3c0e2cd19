"""Storage: the PostgreSQL sink, its row checks and SQL migrations."""
