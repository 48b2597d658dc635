"""``python -m glass`` (and ``torchrun ... -m glass run ...``): the ``glass`` command."""

from glass.cli import main

main()
