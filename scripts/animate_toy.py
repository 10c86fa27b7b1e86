"""``python scripts/animate_toy.py`` is ``python -m trufl.reporting.animate_toy`` (the code and its --help are there)."""

from trufl.reporting.animate_toy import main

if __name__ == "__main__":
    main()
