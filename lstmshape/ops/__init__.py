"""The operations: pure functions from sequence sets to sequence sets or tensors."""
