"""``python -m alignrec_data.cli``: the same as the ``alignrec-data`` console script."""

from alignrec_data.cli import main

if __name__ == "__main__":
    main()
