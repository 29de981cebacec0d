"""Train one model from a named recipe (`train/recipes.py`; see train/train.py for every flag):

    python -m train --recipe best --data DIR --out DIR             # ResNet-50, stage 1
    python -m train --recipe baseline --data DIR --out DIR         # the small CNN
    python -m train --recipe study --data DIR --out DIR            # the original study, exactly
    python -m train --recipe lesion --data DIR --out DIR           # ResNet-50 taught to read the lesion
    python -m train --recipe lesion-baseline --data DIR --out DIR  # the same for the small CNN
    python -m train --recipe dilate --data DIR --out DIR           # a stage: last stage dilated (train.dilate)
"""
from .train import get_args_parser, main

if __name__ == "__main__":
    main(get_args_parser().parse_args())
