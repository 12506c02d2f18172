"""The suites of scripts/benchmark.py: LeNet on the CPU against a minimal loop and the book's
loop, and the language models against the book's loop."""
