"""One run: catalog (which modules), planner (which reader, what it costs), sync (plan -> read -> write -> commit)."""
