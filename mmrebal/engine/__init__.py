"""The training engine: config, the trainer loop with hooks, checkpoints, traces and DDP."""
