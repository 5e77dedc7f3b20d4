"""Authentication and authorization policy: who the caller is and what it may do."""
