"""``python -m pipeline`` is the same as the ``liverburden`` command."""

from pipeline.cli import main

raise SystemExit(main())
