"""Token interop testbed: runs token workflows across WLCG grid implementations."""

__version__ = "0.1.0"
