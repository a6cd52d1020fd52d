"""Training recipes, one Python file each, `get_config(arg) -> Config`.

`vistas train --config siglip_shapes_digits` finds a recipe here by name; a path
(`configs/siglip_shapes_digits.py:quick=True`) works too. See `vistas.training.config`.
"""
