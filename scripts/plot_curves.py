"""``python scripts/plot_curves.py`` is ``python -m trufl.reporting.plot_curves`` (the code and its --help are there)."""

from trufl.reporting.plot_curves import main

if __name__ == "__main__":
    main()
