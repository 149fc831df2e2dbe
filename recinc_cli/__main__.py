"""Allow ``python -m recinc_cli``."""

from recinc_cli.cli.app import main

if __name__ == "__main__":
    main()
