"""Jobs: their kinds and parameters, their records in Redis, and how they are queued."""
