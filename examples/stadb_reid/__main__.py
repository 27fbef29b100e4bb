"""``python -m stadb_reid`` runs the ``stadb-reid`` command (also under ``torchrun``)."""

from .cli import main

if __name__ == "__main__":
    main()
