"""python -m train --recipe {best,baseline,study} --data DIR --out DIR (see train/train.py)."""
from .train import get_args_parser, main

if __name__ == "__main__":
    main(get_args_parser().parse_args())
