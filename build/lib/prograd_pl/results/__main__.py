"""``python -m prograd_pl.results OUTPUT_ROOT ...``: same as ``prograd-pl report``."""

from prograd_pl.results.report import main

if __name__ == "__main__":
    raise SystemExit(main())
