"""d2lexp's configs, installed as the package `d2lexp.conf` (pyproject.toml maps this folder there):
an installed d2lexp composes them from the package, wherever it runs (d2lexp.config.CONF_DIR)."""
