"""What several test modules share: the command line as a user types it (`cli`), configs composed
from the real conf/ (`configs`), and digests of folders that must come out of a test unchanged
(`folders`). Fixtures are in tests/conftest.py."""
