"""``python scripts/plot_samples.py`` is ``python -m trufl.reporting.plot_samples`` (the code and its --help are there)."""

from trufl.reporting.plot_samples import main

if __name__ == "__main__":
    main()
