"""Lightning callbacks d2lexp adds to every run: throughput, sample images, run config."""
