"""bfloat16 for NumPy: the dtype of the optional ``ml_dtypes`` package (the one JAX uses), imported
where it is first needed (fastoptim[lowp] installs it)."""
import numpy as np


def bfloat16(what):
    """``ml_dtypes.bfloat16`` as a NumPy dtype.

    Parameters
    ----------
    what : str
        What needs it, for the message of the ``ImportError`` raised when the package is missing
        (for example ``"state_dtype='bfloat16'"``).
    """
    try:
        import ml_dtypes  # noqa: PLC0415 - optional dependency
    except ImportError:
        raise ImportError(f"{what} needs the ml_dtypes package: pip install ml_dtypes "
                          "(or fastoptim[lowp])") from None
    return np.dtype(ml_dtypes.bfloat16)
