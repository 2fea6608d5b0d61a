"""Training: TrainState, checkpoints (the only orbax user) and metrics logs."""
