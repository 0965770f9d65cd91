"""fastnet: a from-scratch MLP trainer for IDX image data sets such as Fashion-MNIST."""

__version__ = "0.1.0"
