"""Allow ``python -m recinc_cli``."""

from recinc_cli.cli import main

if __name__ == "__main__":
    main()
