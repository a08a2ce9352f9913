"""``python -m ssl_toolkit ...`` is ``ssl ...`` (used by torchrun)."""

from ssl_toolkit.cli import app

if __name__ == "__main__":
    app()
