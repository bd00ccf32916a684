"""File-level commands: each opens its inputs through a Job, runs a pure operation block by
block, and writes the output and its manifest. The CLI is a thin wrapper around these."""
