"""The multiplexer: the merged catalog clients see, and the routes back to targets."""
