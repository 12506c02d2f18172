"""Lightning callbacks of d2lexp runs: throughput, sample images, generated text, sequence
predictions, epoch history, the run config and random states in checkpoints, and a cheaper
ModelCheckpoint."""
