"""`python -m gateway` is the same as the `zvh-gateway` console script."""

from gateway.cli import main

raise SystemExit(main())
