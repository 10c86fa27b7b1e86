"""``python scripts/experiment.py`` is ``python -m trufl.reporting.experiment`` (the code and its --help are there)."""

from trufl.reporting.experiment import main

if __name__ == "__main__":
    main()
