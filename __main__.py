"""``python -m minecli``: the command line, also what ``torchrun -m minecli`` starts on each rank."""
from minecli.cli import main

if __name__ == "__main__":
    main()
