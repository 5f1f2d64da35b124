"""The methods: gradient rules, losses and the LightningModule(s).  Importing the package imports nothing heavy
(the config checks read the option lists below without importing torch)."""

COMPILE_MODES = ("none", "default", "reduce-overhead")
"""``compile=``: no ``torch.compile``, or the step's forward part compiled in that ``torch.compile`` mode."""
