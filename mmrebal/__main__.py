"""``python -m mmrebal ...`` (what ``torchrun ... -m mmrebal train`` runs)."""

from mmrebal.cli import main

main()
