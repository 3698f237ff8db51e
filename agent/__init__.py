"""The agent: what runs inside a block, one per pilot."""
