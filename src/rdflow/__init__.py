"""rdflow: rate-distortion (and rate-accuracy, rate-cost) benchmarking of image and video codecs.

All logic of the Snakemake workflow lives in this package; rules and scripts are thin wrappers.
Importing :mod:`rdflow` is cheap: torch and CompressAI are imported only by the modules that
code images (``rdflow.codecs.learned``), so that ``snakemake -n`` stays fast.
"""

__version__ = "0.1.0"


class RdflowError(Exception):
    """An error with a message meant for the user: it names the file, key or URL and the fix."""
