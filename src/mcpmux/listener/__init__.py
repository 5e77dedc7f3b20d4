"""Client-facing listeners: one module per wire protocol."""
