"""``python scripts/tables.py`` is ``python -m trufl.reporting.tables`` (the code and its --help are there)."""

from trufl.reporting.tables import main

if __name__ == "__main__":
    main()
