"""What outlives a process: the store (SQLite or PostgreSQL) with transcripts, the session
index, sticky settings, jobs and locks, and transcript access through claude-agent-sdk.
Imports `config` and `errors` only."""
