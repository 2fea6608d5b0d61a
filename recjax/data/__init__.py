"""Data layer: readers → EventLog → vocabularies → splits → training examples → batches."""
