"""``python scripts/results_section.py`` is ``python -m trufl.reporting.results_section`` (the code and its --help are there)."""

from trufl.reporting.results_section import main

if __name__ == "__main__":
    main()
