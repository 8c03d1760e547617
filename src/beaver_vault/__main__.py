"""``python -m beaver_vault``: the same as the ``beaver-vault`` console script."""

from beaver_vault.cli import main

raise SystemExit(main())
